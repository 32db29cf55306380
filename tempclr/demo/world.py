"""A small synthetic "world" of instructional videos, from which every demo data set is drawn.

The world is a fixed set of 8 tasks (cooking and DIY), each an ordered script of 4-7 steps.  Every step has a
short CrossTask-style ``name`` ("crack eggs"), a caption-style ``phrase`` ("crack the eggs into a bowl") and a
512-d unit prototype feature drawn from ``seed``; steps with the same phrase in two tasks share one prototype.

A video of a task (``World.sample_video``) performs the task's steps in script order (each skipped with a small
probability) with background seconds before, between and after them, and is ``T`` = 60..180 s long.  Its
per-second features ``[T, 512]`` are ``normalize(center + style + noise)``, stored float16 like real S3D features
(one vector per second of video): ``center`` is the step's prototype (or the shared background direction), ``style`` a per-video
offset, and ``noise`` temporally correlated Gaussian noise.  Captions are paraphrases of the step phrase placed
around the step's interval, plus background chatter, sorted by start time.

Everything a data-set writer needs comes from here: task ids, titles and URLs and step lists (CrossTask
``tasks_primary.txt``), per-video step intervals (CrossTask annotations, YouCook2 segments), captions
(HowTo100M ``raw_caption.json``) and features.  Writers draw each video with their own ``np.random.Generator``
(e.g. seeded by ``[world.seed, dataset_code, video_index]``), so adding a writer never changes another's output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Step", "DemoTask", "DemoVideo", "World", "CAPTION_TEMPLATES", "CHATTER", "LEXICON", "FEATURE_DIM"]

FEATURE_DIM = 512
MIN_SECONDS, MAX_SECONDS = 60, 180
STEP_SKIP_PROB = 0.1
MIN_KEPT_STEPS = 3
STYLE_NORM = 0.4          # norm of the per-video offset added to every second
NOISE_NORM = 1.0          # expected norm of the per-second noise
NOISE_AR = 0.5            # lag-1 correlation of the noise across seconds
BACKGROUND_CHATTER_PROB = 0.4

# (id, title, url, [(name, phrase), ...]); names hold no commas (CrossTask's step list is comma-separated)
_TASKS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("90001", "make pancakes", "https://www.wikihow.com/Make-Pancakes", [
        ("crack eggs", "crack the eggs into a bowl"),
        ("add flour", "add the flour to the bowl"),
        ("pour milk", "pour in the milk"),
        ("whisk batter", "whisk the batter until smooth"),
        ("heat pan", "heat some butter in the pan"),
        ("pour batter", "pour the batter into the pan"),
        ("flip pancake", "flip the pancake over"),
    ]),
    ("90002", "change a tire", "https://www.wikihow.com/Change-a-Tire", [
        ("loosen nuts", "loosen the lug nuts with a wrench"),
        ("jack up car", "jack up the car"),
        ("remove wheel", "take the old wheel off"),
        ("put on spare", "put the spare tire on"),
        ("tighten nuts", "tighten the lug nuts"),
        ("lower car", "lower the car back down"),
    ]),
    ("90003", "make an omelette", "https://www.wikihow.com/Make-an-Omelette", [
        ("crack eggs", "crack the eggs into a bowl"),
        ("whisk eggs", "whisk the eggs with a fork"),
        ("heat pan", "heat some butter in the pan"),
        ("pour eggs", "pour the eggs into the pan"),
        ("add cheese", "sprinkle the cheese on top"),
        ("fold omelette", "fold the omelette in half"),
    ]),
    ("90004", "make a grilled cheese sandwich", "https://www.wikihow.com/Make-a-Grilled-Cheese-Sandwich", [
        ("butter bread", "spread butter on the bread"),
        ("add cheese slices", "put the cheese slices on the bread"),
        ("close sandwich", "close the sandwich"),
        ("grill sandwich", "grill the sandwich until golden"),
        ("cut sandwich", "cut the sandwich in half"),
    ]),
    ("90005", "paint a wall", "https://www.wikihow.com/Paint-a-Wall", [
        ("tape edges", "tape the edges of the wall"),
        ("stir paint", "stir the paint well"),
        ("pour paint", "pour paint into the tray"),
        ("roll paint", "roll the paint onto the wall"),
        ("apply second coat", "apply a second coat"),
    ]),
    ("90006", "make lemonade", "https://www.wikihow.com/Make-Lemonade", [
        ("cut lemons", "cut the lemons in half"),
        ("squeeze lemons", "squeeze the juice out of the lemons"),
        ("add sugar", "add sugar to the juice"),
        ("add water", "pour in cold water"),
        ("stir lemonade", "stir everything together"),
        ("add ice", "add some ice cubes"),
    ]),
    ("90007", "plant a tomato seedling", "https://www.wikihow.com/Plant-Tomatoes", [
        ("dig hole", "dig a hole in the soil"),
        ("loosen roots", "loosen the roots gently"),
        ("place plant", "place the plant in the hole"),
        ("fill soil", "fill the hole with soil"),
        ("water plant", "water the plant well"),
    ]),
    ("90008", "brew pour over coffee", "https://www.wikihow.com/Make-Pour-Over-Coffee", [
        ("boil water", "boil some water in the kettle"),
        ("grind beans", "grind the coffee beans"),
        ("place filter", "put the filter in the dripper"),
        ("add coffee", "add the ground coffee"),
        ("pour hot water", "pour hot water slowly over the grounds"),
    ]),
]

# ASR-like paraphrases of a step phrase; "{phrase}" is replaced by the step's phrase
CAPTION_TEMPLATES: tuple[str, ...] = (
    "{phrase}", "now {phrase}", "next we {phrase}", "{phrase} like this", "so {phrase}", "okay now {phrase}",
    "then {phrase}", "let's {phrase}", "i'm going to {phrase}", "you want to {phrase}", "now just {phrase}",
    "next you {phrase}", "and then {phrase}", "we're going to {phrase} right now", "{phrase} just like that",
    "first {phrase}", "you need to {phrase}", "go ahead and {phrase}", "make sure you {phrase}",
)

# background talk with no step in it
CHATTER: tuple[str, ...] = (
    "welcome back to my channel", "hi everyone", "don't forget to subscribe", "thanks for watching",
    "see you next time", "okay so", "as you can see", "let me show you", "this is really easy",
    "the link is in the description", "it only takes a few minutes", "hit the like button",
    "leave a comment below", "that's it for today", "all right",
)
# everyday instructional words beyond the scripts, so later demo writers (YouCook2-style sentences, CrossTask
# step names) and hand-typed queries rarely fall back to word pieces; part of the tokenizer corpus only
LEXICON: tuple[str, ...] = tuple("""
a about above add after again all almost also always an and another any apple apron around as at away back
bacon bag bake baking banana base basil bean beat beef before begin behind best better between big bit blade
blend blender board boil bolt both bottle bottom bowl box bread break brush bucket butter by cabbage cake can
car carefully carrot carton center check cheese chicken chili chop chopped clamp clean clear cloth coat cold
color come cook cooked cookie cool corner cover crack cream crisp cucumber cup cut cutting dough down drain
drill drop dry each easy edge egg eggs electric empty end enough even every fill filling finally fine finish
fire first fish flat flour fold food for fork fresh fridge from front fry frying full garlic gently get give
glass glue good grab grate grater green grill ground hammer hand handle hard have heat heavy help here high
hold hole honey hot how ice in inside into it its jar juice just keep kettle knife ladder large layer leave
left lemon let lettuce lid lift light like line liquid little long loose low make many measure meat medium
melt metal minute mix mixer mixture more most move much mushroom nail need new next nice nut oil old on once
onion open or orange other out oven over pan paper pasta paste peel pepper piece pinch place plate plug pot
potato pour powder press pull push put quick quickly rack raw ready remove repeat rice right rinse roll room
rub salad salt sauce saw scissors scoop screw screwdriver season second see seed set shake shape sharp sheet
side simmer simple sink slice slowly small smooth soft some soup spatula spoon spray spread sprinkle square
stick still stir stove strain sugar surface take tape taste tea teaspoon tablespoon temperature the then
thin thing this through tight time timer together tomato too tool top towel tray turn two under until up use
vegetable wait wall want warm wash water way well wet wheel when while whisk white wipe with wood wooden work
yellow you your
""".split())
INTRO_CHATTER = ("welcome back to my channel", "hi everyone")
OUTRO_CHATTER = ("don't forget to subscribe", "thanks for watching", "see you next time", "that's it for today")


@dataclass(frozen=True)
class Step:
    """One step of a task script: CrossTask-style ``name``, caption ``phrase``, row of ``World.prototypes``."""
    name: str
    phrase: str
    proto: int


@dataclass(frozen=True)
class DemoTask:
    """A task: CrossTask-style numeric-string ``id``, ``title``, ``url`` and the ordered ``steps``."""
    id: str
    title: str
    url: str
    steps: tuple[Step, ...]


@dataclass
class DemoVideo:
    """One sampled video.

    ``features``: float16 ``[T, D]``, L2-normalised rows, one per second.
    ``steps``: ``[(step_index, start_s, end_s), ...]`` in time order, integer seconds, ``end`` exclusive;
    ``step_index`` is 0-based into ``task.steps`` (CrossTask annotation files write it 1-based).
    ``captions``: ``[(start_s, end_s, text), ...]`` sorted by start, ``0 <= start < end <= T``.
    """
    task_id: str
    features: np.ndarray
    steps: list[tuple[int, int, int]]
    captions: list[tuple[float, float, str]] = field(default_factory=list)

    @property
    def duration(self) -> int:
        """``T``, the number of seconds (= feature rows)."""
        return int(self.features.shape[0])

    def step_labels(self) -> np.ndarray:
        """int64 ``[T]``: the step index performed at each second, -1 on background."""
        labels = np.full(self.duration, -1, dtype=np.int64)
        for step_index, start, end in self.steps:
            labels[start:end] = step_index
        return labels


def _unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _split_integer(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integer parts proportional to ``weights`` (largest-remainder rounding)."""
    exact = weights / weights.sum() * total
    parts = np.floor(exact).astype(np.int64)
    leftover = int(total - parts.sum())
    order = np.argsort(-(exact - parts), kind="stable")
    parts[order[:leftover]] += 1
    return parts


class World:
    """The seeded world: ``tasks``, step ``prototypes [P, D]`` and the ``background [D]`` direction."""

    def __init__(self, seed: int = 0, feature_dim: int = FEATURE_DIM) -> None:
        self.seed = int(seed)
        self.feature_dim = int(feature_dim)
        phrase_to_proto: dict[str, int] = {}
        tasks = []
        for task_id, title, url, steps in _TASKS:
            built = []
            for name, phrase in steps:
                proto = phrase_to_proto.setdefault(phrase, len(phrase_to_proto))
                built.append(Step(name=name, phrase=phrase, proto=proto))
            tasks.append(DemoTask(id=task_id, title=title, url=url, steps=tuple(built)))
        self.tasks: tuple[DemoTask, ...] = tuple(tasks)
        rng = np.random.default_rng([self.seed, 0])
        vectors = _unit_rows(rng, len(phrase_to_proto) + 1, self.feature_dim)
        self.prototypes: np.ndarray = vectors[:-1]
        self.background: np.ndarray = vectors[-1]

    def task(self, task_id: str) -> DemoTask:
        """The task with this id; ``KeyError`` lists the valid ids."""
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(f"no task {task_id!r} in the demo world; ids: {[t.id for t in self.tasks]}")

    # ----------------------------------------------------------------------------------------- sampling
    def sample_video(self, rng: np.random.Generator, task: DemoTask) -> DemoVideo:
        """Draw one video of ``task`` (layout, features and captions) using only ``rng``."""
        kept = self._kept_steps(rng, task)
        duration = int(rng.integers(MIN_SECONDS, MAX_SECONDS + 1))
        intervals = self._layout(rng, kept, duration)
        features = self._features(rng, task, intervals, duration)
        captions = self._captions(rng, task, intervals, duration)
        return DemoVideo(task_id=task.id, features=features, steps=intervals, captions=captions)

    def _kept_steps(self, rng: np.random.Generator, task: DemoTask) -> list[int]:
        keep = rng.random(len(task.steps)) >= STEP_SKIP_PROB
        if keep.sum() < MIN_KEPT_STEPS:
            keep[:] = True
        return [int(i) for i in np.flatnonzero(keep)]

    @staticmethod
    def _layout(rng: np.random.Generator, kept: list[int], duration: int) -> list[tuple[int, int, int]]:
        """Segments intro, step, gap, step, ..., step, outro filling ``duration`` s; returns step intervals."""
        k = len(kept)
        is_step = np.array([i % 2 == 1 for i in range(2 * k + 1)])
        minimum = np.where(is_step, 4, 1)
        minimum[0] = 2
        alpha = np.where(is_step, 4.0, 1.0)
        alpha[[0, -1]] = 1.5
        lengths = minimum + _split_integer(duration - int(minimum.sum()), rng.dirichlet(alpha))
        ends = np.cumsum(lengths)
        return [(kept[j], int(ends[2 * j + 1] - lengths[2 * j + 1]), int(ends[2 * j + 1])) for j in range(k)]

    def _features(self, rng: np.random.Generator, task: DemoTask, intervals: list[tuple[int, int, int]],
                  duration: int) -> np.ndarray:
        centers = np.tile(self.background, (duration, 1))
        for step_index, start, end in intervals:
            centers[start:end] = self.prototypes[task.steps[step_index].proto]
        style = STYLE_NORM * _unit_rows(rng, 1, self.feature_dim)[0]
        innovations = rng.standard_normal((duration, self.feature_dim)).astype(np.float32)
        innovations *= NOISE_NORM / np.sqrt(self.feature_dim)
        noise = np.empty_like(innovations)
        noise[0] = innovations[0]
        scale = np.sqrt(1.0 - NOISE_AR ** 2)
        for t in range(1, duration):
            noise[t] = NOISE_AR * noise[t - 1] + scale * innovations[t]
        feats = centers + style + noise
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        return feats.astype(np.float16)

    def _captions(self, rng: np.random.Generator, task: DemoTask, intervals: list[tuple[int, int, int]],
                  duration: int) -> list[tuple[float, float, str]]:
        captions = []

        def add(start: float, length: float, text: str) -> None:
            start = min(max(0.0, start), duration - 1.0)
            end = min(float(duration), start + length)
            captions.append((round(start, 2), round(end, 2), text))

        for step_index, start, end in intervals:
            phrase = task.steps[step_index].phrase
            for _ in range(int(rng.integers(1, 4))):
                template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
                offset = rng.uniform(-1.5, max(0.5, end - start - 2.0))
                add(start + offset, rng.uniform(2.0, 5.0), template.format(phrase=phrase))
        if rng.random() < 0.7:
            add(rng.uniform(0.0, 1.0), rng.uniform(1.5, 3.0), INTRO_CHATTER[int(rng.integers(len(INTRO_CHATTER)))])
        if rng.random() < 0.7:
            add(duration - rng.uniform(2.0, 4.0), rng.uniform(1.5, 3.0),
                OUTRO_CHATTER[int(rng.integers(len(OUTRO_CHATTER)))])
        for (_, _, gap_start), (_, gap_end, _) in zip(intervals[:-1], intervals[1:]):
            if gap_end - gap_start >= 3 and rng.random() < BACKGROUND_CHATTER_PROB:
                add(gap_start + rng.uniform(0.0, gap_end - gap_start - 2.0), rng.uniform(1.5, 3.0),
                    CHATTER[int(rng.integers(len(CHATTER)))])
        captions.sort(key=lambda caption: (caption[0], caption[1]))
        return captions

    # ----------------------------------------------------------------------------------------- text, json
    def text_corpus(self) -> list[str]:
        """Every sentence the world can say: task titles, step names and phrases, all caption templates
        applied to all phrases, the chatter and ``LEXICON`` (for training the demo tokenizer)."""
        lines = [task.title for task in self.tasks]
        phrases = sorted({step.phrase for task in self.tasks for step in task.steps})
        lines += sorted({step.name for task in self.tasks for step in task.steps})
        lines += [template.format(phrase=phrase) for phrase in phrases for template in CAPTION_TEMPLATES]
        lines += list(CHATTER)
        lines += [" ".join(LEXICON[i:i + 12]) for i in range(0, len(LEXICON), 12)]
        return lines

    def to_json(self) -> dict[str, Any]:
        """The world description other generators and readers use (no features: rebuild with ``World(seed)``)."""
        return {
            "seed": self.seed,
            "feature_dim": self.feature_dim,
            "seconds": [MIN_SECONDS, MAX_SECONDS],
            "tasks": [{"id": t.id, "title": t.title, "url": t.url,
                       "steps": [{"name": s.name, "phrase": s.phrase, "proto": s.proto} for s in t.steps]}
                      for t in self.tasks],
            "caption_templates": list(CAPTION_TEMPLATES),
            "chatter": list(CHATTER),
        }
