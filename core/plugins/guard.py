"""Hook implementations guarded one by one: a plugin's exception is reported for that plugin and
the hook call goes on with the others, as if the failing implementation had returned nothing.

Used for the registration hooks (``tl.plugins.registry``: a broken plugin must not stop the others'
registrations) and the event hooks (``tl.plugins.events``: a broken plugin must not take down the
CLI or a training run). Each ``HookImpl.function`` is swapped for its guarded version for the
duration of one hook call and put back afterwards, so pluggy's own call order, ``tryfirst``/
``trylast`` and hook wrappers (new-style ``wrapper`` and old-style ``hookwrapper``) all still apply.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Generator, Iterator
from typing import Any

#: What a guard needs for one implementation: where its failure goes, and how to rewrite the
#: arguments pluggy passes it (``(args, kwargs) -> (args, kwargs)``; None: unchanged).
Fail = Callable[[BaseException], None]
Rewrite = Callable[[tuple, dict], tuple[tuple, dict]]


@contextlib.contextmanager
def guarded_hooks(pm: Any, hook_names: tuple[str, ...],
                  guard_for: Callable[[Any], tuple[Fail, Rewrite | None]]) -> Iterator[None]:
    """Every implementation of ``hook_names`` guarded (``guard_for(impl)`` gives its failure callback
    and argument rewrite), then restored."""
    originals = []
    for hook_name in hook_names:
        caller = getattr(pm.hook, hook_name, None)
        for impl in caller.get_hookimpls() if caller is not None else ():
            fail, rewrite = guard_for(impl)
            originals.append((impl, impl.function))
            # HookImpl.function is Final only for type checkers; pluggy calls whatever it holds.
            impl.function = _guard(impl, fail, rewrite)  # type: ignore[misc]
    try:
        yield
    finally:
        for impl, function in originals:
            impl.function = function  # type: ignore[misc]


def _guard(impl: Any, fail: Fail, rewrite: Rewrite | None) -> Callable[..., Any]:
    fn = impl.function

    def arguments(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return rewrite(args, kwargs) if rewrite is not None else (args, kwargs)

    if impl.wrapper or impl.hookwrapper:

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = arguments(args, kwargs)
            try:
                gen = fn(*args, **kwargs)
            except Exception as exc:  # reported; the wrapper then does nothing
                fail(exc)
                gen = None
            return _guarded_wrapper(gen, fail)

    else:

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = arguments(args, kwargs)
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # a broken plugin must not stop the others
                fail(exc)
                return None

    return guarded


def _guarded_wrapper(gen: Any, fail: Callable[[BaseException], None]) -> Generator[None, Any, Any]:
    """Drive a hook wrapper's generator for pluggy (new-style ``wrapper`` or old-style ``hookwrapper``);
    if it raises, report it and let the hook call go on as if the wrapper did nothing."""
    if gen is not None:
        try:
            next(gen)
        except StopIteration:
            fail(RuntimeError("hook wrapper did not yield"))
            gen = None
        except Exception as exc:
            fail(exc)
            gen = None
    if gen is None:
        return (yield)
    thrown: BaseException | None = None
    try:
        sent = yield
    except BaseException as exc:  # an exception of the hook call, thrown into new-style wrappers
        thrown, sent = exc, None
    try:
        if thrown is not None:
            gen.throw(thrown)
        else:
            gen.send(sent)
    except StopIteration as stop:
        return stop.value
    except Exception as exc:
        if exc is thrown:
            raise
        fail(exc)
        if thrown is not None:
            raise thrown from None
        return sent
    gen.close()
    fail(RuntimeError("hook wrapper has a second yield"))
    if thrown is not None:
        raise thrown
    return sent
