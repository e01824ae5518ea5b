import signal

import numpy as np
import pytest

import noether_sim as ns

# A shell starts background jobs with SIGINT ignored (no job control: `bash .ci/run &`), the ignore is
# inherited across exec, and Python then installs no KeyboardInterrupt handler: the Ctrl-C tests would
# test the shell, not the package. Restore the default here; a handled signal is reset to the default in
# the children these tests start.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def net3():
    """A 3-layer deep linear network with its data (the trajectory/order tests' problem)."""
    model = ns.DeepLinear((4, 6, 5, 3))
    data = ns.data.synthetic_regression(4, 3, 20, noise=0.1, seed=1)
    return model, data


@pytest.fixture(scope="session")
def reference_problem():
    """The engine's reference problem (10-16-16-5, N = 64), used at small seed counts in tests."""
    model = ns.DeepLinear((10, 16, 16, 5))
    data = ns.data.synthetic_regression(10, 5, 64, noise=0.1, seed=0)
    return model, data
