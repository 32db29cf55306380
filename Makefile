# Quick start:  make demo   (set up .venv, build the demo data, train VideoCLIP on it, evaluate YouCook2 retrieval)
#               make test   (set up .venv with test extras, run the default test tier: minutes)
#               make test-all  (both tiers: the default one and the slow one, multi-process and full-size runs, Ray)
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-test demo demo-data demo-youcook demo-tempclr demo-crosstask demo-benchmarks test test-slow test-all \
	clean-demo

setup:
	bash scripts/setup_env.sh

setup-test:
	bash scripts/setup_env.sh test

# the marker of the newest writer: a demo folder made before it existed is rebuilt
DEMO_DATA := data/demo/youcook/demo_youcook.json

$(DEMO_DATA): | setup
	$(PY) scripts/make_demo_data.py --out data/demo

demo-data: $(DEMO_DATA)

# train VideoCLIP on the demo, then YouCook2 retrieval of the trained model vs an untrained one and chance
demo: setup demo-data
	$(PY) locallaunch.py configs/demo/how2.yaml --jobtype local_single
	$(PY) scripts/youcook_demo_report.py

# after `make demo`: the YouCook2 retrieval report again (runs/demo/youcook_zs/)
demo-youcook: setup demo-data
	$(PY) scripts/youcook_demo_report.py

# after `make demo`: TempCLR's alignment loss (DTW, OTAM) from the demo VideoCLIP checkpoint, and a picture
demo-tempclr: setup demo-data
	$(PY) locallaunch.py configs/demo/how2_dtw.yaml,configs/demo/how2_otam.yaml
	$(PY) scripts/plot_alignment.py --config configs/demo/how2_dtw.yaml

# after `make demo`: zero-shot CrossTask of the demo model vs an untrained one, timelines, fine-tuning
demo-crosstask: setup demo-data
	$(PY) scripts/crosstask_demo_report.py
	$(PY) locallaunch.py configs/demo/crosstask.yaml,configs/demo/test_crosstask.yaml

# the demo checkpoint `make demo` trains (demo-benchmarks trains it when it is missing)
DEMO_CKPT := runs/demo/videoclip/checkpoint_best.pt

$(DEMO_CKPT): | setup demo-data
	$(PY) locallaunch.py configs/demo/how2.yaml --jobtype local_single

# after `make demo`: write the MSR-VTT, MSR-VTT QA, COIN and DiDeMo demo sets, then one table of every zero-shot demo
# benchmark (chance, untrained, demo checkpoint) and MSR-VTT / COIN fine-tuned from the demo checkpoint
demo-benchmarks: setup demo-data $(DEMO_CKPT)
	$(PY) scripts/make_demo_benchmarks.py
	$(PY) scripts/demo_benchmarks_report.py

# the default tier: unit tests and one short end-to-end run per path (a default-tier test over 10 s fails)
test: setup-test
	$(PY) -m pytest tests -q -m "not slow"

# the slow tier alone: several processes, kill/resume, large grids, the full-size model, a real Ray cluster (the
# ray extra is installed here only: the default tier and the demo never import Ray)
test-slow:
	bash scripts/setup_env.sh test,ray
	$(PY) -m pytest tests -q -m slow

test-all:
	bash scripts/setup_env.sh test,ray
	$(PY) -m pytest tests -q

clean-demo:
	rm -rf runs/demo
