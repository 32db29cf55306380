"""Test and benchmark support shared by ``tests/`` and ``benchmarks/`` (as numpy.testing / torch.testing are).

:mod:`tempclr.testing.original`: the original TempCLR / MMPT loops, written out plainly, that the tests use as
oracles and the benchmarks time.  Nothing here is imported by the package itself.
"""
