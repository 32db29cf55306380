"""``dataset.bert_name`` (and ``--tokenizer``): a BERT folder or a hub model name, checked before transformers
reads it, so that a folder that does not exist is named as such (transformers calls it a malformed hub repo id)."""
from __future__ import annotations

import os
from typing import Any

__all__ = ["BERT_FOLDER_HOW", "check_bert_name", "load_pretrained"]

BERT_FOLDER_HOW = ("point it at a folder holding the BERT's config.json and vocab.txt, or at a hub model name "
                   "such as bert-base-uncased (for the demo: data/demo/bert, written by `make demo-data`)")


def _looks_like_path(name: str) -> bool:
    """A name that can only be a folder: absolute, ``./``/``../``/``~``-relative, or with more than one ``/``
    (hub names are ``name`` or ``owner/name``)."""
    return (os.path.isabs(name) or name.startswith(("./", "../", "~", ".\\")) or name.count("/") > 1
            or "\\" in name)


def check_bert_name(bert_name: str, key: str = "dataset.bert_name") -> str:
    """``bert_name`` when it can name a BERT: an existing folder or a hub name; a path that does not exist is a
    ``FileNotFoundError`` naming ``key`` (transformers would call it a malformed hub repo id)."""
    if not os.path.exists(bert_name) and _looks_like_path(bert_name):
        raise FileNotFoundError(f"{key}: the folder {bert_name} does not exist; {BERT_FOLDER_HOW}")
    if os.path.exists(bert_name) and not os.path.isdir(bert_name):
        raise NotADirectoryError(f"{key}: {bert_name} is a file, not a folder; {BERT_FOLDER_HOW}")
    return bert_name


def load_pretrained(loader: Any, bert_name: str, key: str = "dataset.bert_name", **kwargs: Any) -> Any:
    """``loader.from_pretrained(bert_name, **kwargs)`` after :func:`check_bert_name`; transformers' own failure
    (a hub name that cannot be reached offline, a folder without the files) is re-raised naming ``key``."""
    check_bert_name(bert_name, key)
    try:
        return loader.from_pretrained(bert_name, **kwargs)
    except (OSError, ValueError) as error:
        kind = "folder" if os.path.isdir(bert_name) else "hub model name"
        raise FileNotFoundError(f"{key}: {bert_name} ({kind}) cannot be loaded: {error}; {BERT_FOLDER_HOW}") \
            from error
