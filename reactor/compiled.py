"""``mypyc_attr``: what the fast build's compiler reads on a class, and a no-op when the module runs as Python.

mypyc (``make fast``, reactor/fastbuild.py) reads ``@mypyc_attr(...)`` at compile time, by its name in
mypy_extensions; the decorator itself does nothing at run time, in either build. So the modules import it from
here, which names mypy_extensions for the type checker and the compiler alone: the default server (and the
compiled one) runs on the standard library.

``@mypyc_attr(allow_interpreted_subclasses=True)`` goes on a compiled class that an uncompiled one subclasses (a
cluster node's rules and host, a test's double); without it such a subclass is a TypeError at import.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    def mypyc_attr(*attrs: str, **flags: Any) -> Any:
        return lambda cls: cls

__all__ = ["mypyc_attr"]
