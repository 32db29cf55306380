"""The test tiers: the conftest guard fails a default-tier test over the time limit (naming it), counts the
smaller of wall and CPU time, and leaves slow-tier tests alone."""
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

def test_busy():
    end = time.perf_counter() + 0.6
    while time.perf_counter() < end:
        pass

@pytest.mark.slow
def test_busy_but_slow_tier():
    end = time.perf_counter() + 0.6
    while time.perf_counter() < end:
        pass
""")
    monkeypatch.setenv("TEMPCLR_NUMBA_WARMUP", "0")
    monkeypatch.setenv("TEMPCLR_TEST_TIME_LIMIT", "0.3")
    result = pytester.runpytest_subprocess("-q")
    # sleeping costs wall time but no CPU time (as a test slowed by other work on the machine): not blamed
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_timed.py::test_busy took 0.* s (wall 0.* s, CPU 0.* s), over the default "
                                 "tier's limit of 0.3 s*"])
    monkeypatch.setenv("TEMPCLR_TEST_TIME_LIMIT", "0")
    pytester.runpytest_subprocess("-q").assert_outcomes(passed=4)

