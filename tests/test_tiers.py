"""The test tiers: the conftest guard fails a default-tier test over the time limit (naming it) and leaves
slow-tier tests alone."""
import os

CONFTEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conftest.py")


def test_the_guard_fails_a_slow_default_tier_test_and_names_it(pytester, monkeypatch):
    with open(CONFTEST) as f:
        pytester.makeconftest(f.read())
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow tier\n")
    pytester.makepyfile(test_timed="""
import time
import pytest

def test_quick():
    pass

def test_sleepy():
    time.sleep(0.6)

@pytest.mark.slow
def test_sleepy_but_slow_tier():
    time.sleep(0.6)
""")
    monkeypatch.setenv("TEMPCLR_NUMBA_WARMUP", "0")
    monkeypatch.setenv("TEMPCLR_TEST_TIME_LIMIT", "0.3")
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_timed.py::test_sleepy took 0.* s, over the default tier's limit of 0.3 s*"])
    monkeypatch.setenv("TEMPCLR_TEST_TIME_LIMIT", "0")
    pytester.runpytest_subprocess("-q").assert_outcomes(passed=3)

