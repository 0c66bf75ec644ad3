"""setuptools' hook for the one thing pyproject.toml cannot say: ``REACTOR_FAST=1 pip install '.[fast]'`` builds a
wheel that holds the fast build (the hot modules compiled by mypyc, reactor/fastbuild.py) beside the sources.

Without REACTOR_FAST=1 nothing here changes the package: pure Python, the standard library alone. With it, pip
puts mypy (which ships mypyc) in the isolated build environment (``setup_requires``, which setuptools hands pip as
a build requirement), and the sources copied into the wheel are compiled there, their manifest beside them, so
the installed package loads them (reactor/builds.py). An editable install is the source tree: ``make fast``.
"""
import os
import sys

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

FAST = os.environ.get("REACTOR_FAST") == "1"
MYPY = "mypy==2.4.1"   # the dev extra's pin: the compiler the fast build is tested with


class BuildPyWithFast(build_py):
    """Copies the sources as usual, then (REACTOR_FAST=1) compiles the copies' hot modules in place."""

    def run(self):
        super().run()
        if FAST:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from reactor import fastbuild
            fastbuild.build(os.path.join(os.path.abspath(self.build_lib), "reactor"), force=True)


class FastDistribution(Distribution):
    def has_ext_modules(self):   # a wheel with compiled modules is tagged for its interpreter and platform
        return FAST or super().has_ext_modules()


setup(distclass=FastDistribution, cmdclass={"build_py": BuildPyWithFast}, setup_requires=[MYPY] if FAST else [])
