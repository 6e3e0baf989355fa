"""What conftest.py gives every test: the signal handlers it found, whatever the test before it
left installed (Lightning installs its SIGTERM notifier for each fit; a run cut short, or a test
that installs a handler itself, would leave one behind)."""

import signal

AT_IMPORT = signal.getsignal(signal.SIGTERM)


def leaked(signum, frame):  # a stand-in for a handler left behind by a run in this process
    raise AssertionError("a handler left behind by the previous test ran")


def test_a_test_that_leaves_a_sigterm_handler_installed():
    signal.signal(signal.SIGTERM, leaked)
    assert signal.getsignal(signal.SIGTERM) is leaked


def test_the_next_test_finds_the_handler_it_would_have_found_anyway():
    # runs after the test above (pytest keeps definition order); fails without conftest's restore
    assert signal.getsignal(signal.SIGTERM) is AT_IMPORT and AT_IMPORT is not leaked
