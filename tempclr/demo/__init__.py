"""The embedded demo: one seeded synthetic world (tasks, steps, videos, captions) and the writers that turn it
into the HowTo100M and CrossTask formats and a tiny BERT.  Used by ``scripts/make_demo_data.py`` and the tests;
nothing in training or evaluation imports it."""


def pretrained_checkpoint(config, config_file: str) -> str:
    """The demo checkpoint an evaluation config points at (``fairseq.common_eval.path``); a clear error saying
    to train it first (``make demo``) when it does not exist.  Used by the demo reports."""
    import os

    from tempclr.utils.load_config import cfg_get

    path = str(cfg_get(config, "fairseq.common_eval.path"))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} (fairseq.common_eval.path of {config_file}) does not exist; "
                                "train the demo VideoCLIP first: make demo")
    return path
