"""Run fairseq-train in this process, killing it (or pausing it) at a chosen checkpoint write.

    TEMPCLR_TEST_FAULT=KIND:NAME:NTH python tests/crash_injector.py FAIRSEQ_TRAIN_ARGS...

KIND is ``save`` (``torch.save`` into a file whose name holds NAME), ``copy`` (``shutil.copyfile`` to a file
whose name holds NAME, or ``shutil.copyfileobj`` into one) or ``pause``; NTH counts the matching calls from 1.  At the NTH one, ``save`` and ``copy``
write the first half of the bytes the call would write, flush them, and ``SIGKILL`` this process: it dies in the
middle of the write, as after an OOM kill or a node failure.  ``pause`` creates ``$TEMPCLR_TEST_GATE.paused`` and
waits for ``$TEMPCLR_TEST_GATE`` to exist before the ``torch.save`` goes on.  Only these two library calls are
wrapped, below whatever fairseq and tempclr do with them; the code under test runs unchanged.  (fairseq's copy
of a checkpoint is ``shutil.copyfile``; tempclr's atomic copy opens its temp file without following links and
fills it with ``shutil.copyfileobj``.)
"""
import io
import os
import shutil
import signal
import sys
import time

import torch

KIND, NAME, NTH = os.environ["TEMPCLR_TEST_FAULT"].split(":")
_calls = 0


def _hit(target) -> bool:
    global _calls
    if NAME not in os.path.basename(str(target)):
        return False
    _calls += 1
    return _calls == int(NTH)


def _die_half_written(data: bytes, out) -> None:
    out.write(data[: len(data) // 2])
    out.flush()
    os.kill(os.getpid(), signal.SIGKILL)


_real_save = torch.save
_real_copyfile = shutil.copyfile
_real_copyfileobj = shutil.copyfileobj


def save(obj, f, *args, **kwargs):
    target = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", "")
    if KIND in ("save", "pause") and _hit(target):
        if KIND == "pause":
            gate = os.environ["TEMPCLR_TEST_GATE"]
            open(gate + ".paused", "w").close()
            deadline = time.time() + 600
            while not os.path.exists(gate) and time.time() < deadline:
                time.sleep(0.05)
        else:
            buffer = io.BytesIO()
            _real_save(obj, buffer, *args, **kwargs)
            if isinstance(f, (str, os.PathLike)):
                with open(f, "wb") as out:
                    _die_half_written(buffer.getvalue(), out)
            _die_half_written(buffer.getvalue(), f)
    return _real_save(obj, f, *args, **kwargs)


def copyfile(src, dst, *, follow_symlinks=True):
    if KIND == "copy" and _hit(dst):
        with open(src, "rb") as source, open(dst, "wb") as out:
            _die_half_written(source.read(), out)
    return _real_copyfile(src, dst, follow_symlinks=follow_symlinks)


def copyfileobj(fsrc, fdst, *args, **kwargs):
    if KIND == "copy" and _hit(getattr(fdst, "name", "")):
        _die_half_written(fsrc.read(), fdst)
    return _real_copyfileobj(fsrc, fdst, *args, **kwargs)


torch.save = save
shutil.copyfile = copyfile
shutil.copyfileobj = copyfileobj

if __name__ == "__main__":
    from fairseq_cli.train import cli_main

    sys.argv = ["fairseq-train"] + sys.argv[1:]
    cli_main()
