"""Shared test configuration: the repository's own package first on sys.path, then this folder
(for the helpers the stage folders share), --runslow."""

import os
import sys

import pytest
import torch

# The networks here are small: one intra-op thread is as fast as two and keeps parallel test
# processes from oversubscribing the cores. Tests only; the library sets no thread count.
torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
if sys.path[0] != ROOT:
    sys.path.insert(0, ROOT)
if TESTS not in sys.path:  # the helpers the stage folders share (plumed_tool, md_commands)
    sys.path.insert(1, TESTS)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow test: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
