import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "crack", "the", "eggs", "into", "a", "bowl", "now",
         "whisk", "add", "flour", "and", "milk", "pour", "batter", "pan", "flip", "pancake", "serve", "##s"]


@pytest.fixture(scope="session")
def vocab_dir(tmp_path_factory):
    """A folder holding a small WordPiece vocab.txt and tokenizer_config.json (AutoTokenizer needs the class)."""
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer", "do_lower_case": true}')
    return str(folder)
