"""tempclr: video-text representation learning with temporal alignment, as a fairseq user-dir plugin.

``fairseq-train CONFIG --user-dir tempclr --task mmtask --arch mmarch --criterion mmloss`` imports this package
after fairseq, which registers the fairseq task ``mmtask``, model ``mmmodel``, architecture ``mmarch`` and
criterion ``mmloss``, and makes every checkpoint file fairseq writes appear only complete.  Imported on its own
(kernels, metrics, processors) it does not pay for importing fairseq; call :func:`register_fairseq` to register
the plugin in a process that drives fairseq itself.
"""
import sys

from .utils.safe_pickle import allow_in_torch

# fairseq's legacy tasks store argparse.Namespace (and numpy scalars, OrderedDict) in checkpoints; fairseq's resume
# loads them with torch's default, weights_only=True, which admits them only when allowed.
allow_in_torch()


def register_fairseq() -> None:
    """Register the fairseq task, model, architecture and criterion, and make fairseq's checkpoint writes and
    copies atomic (:mod:`tempclr.tasks.fairseq_checkpoint_io`) (idempotent)."""
    from .losses import fairseqmmloss  # noqa: F401
    from .models import fairseqmmmodel  # noqa: F401
    from .tasks import fairseqmmtask  # noqa: F401
    from .tasks.fairseq_checkpoint_io import install_atomic_checkpoint_writes
    from .utils.safe_pickle import require_weights_only_default

    require_weights_only_default()
    install_atomic_checkpoint_writes()


if "fairseq" in sys.modules:  # imported as fairseq's --user-dir
    register_fairseq()
