"""The machinery behind in-notebook checks: friendly failures, a registry, comparisons.

A lesson runs `check.merge(merge)` right after the learner's exercise cell. What the
learner must see is one short block that says which input broke, what was expected and
what came back, never a forty-line traceback through the grader. So:

* `CheckFailed` and `NotAttempted` implement IPython's `_render_traceback_()`, which
  IPython calls instead of formatting the traceback; the learner gets one block.
* `@exercise("merge")` registers a check and wraps it so that a learner's
  `raise NotImplementedError` becomes `NotAttempted`, any other crash becomes
  `CheckFailed`, and success prints exactly one line (stable output for nbval).
* `call`, `expect_equal`, `expect_close` and `expect_type` are the few helpers a check
  needs to produce those messages without repeating the formatting in every lesson.

Torch is imported lazily: `from course import checks as check` must stay instant.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "EXERCISES",
    "CheckFailed",
    "NotAttempted",
    "call",
    "exercise",
    "expect_close",
    "expect_equal",
    "expect_type",
    "square",
]

#: Every registered check, by exercise name; `course.checks.<name>` looks names up here.
EXERCISES: dict[str, Callable[..., None]] = {}

# Names of the framework itself; an exercise with one of these names would be shadowed.
_RESERVED = (frozenset(__all__) - {"square"}) | {"checks", "describe_args", "load_all", "show"}

_MAX_REPR = 160

# Counts `call()`s made by the running check, so a check need not count its own cases.
_CALLS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("_CALLS", default=None)

_F = TypeVar("_F", bound=Callable[..., Any])


class CheckFailed(AssertionError):
    """The learner's code ran but gave a wrong answer (or crashed) on a named input.

    It derives from AssertionError so plain `pytest` and `python` treat it as a failed
    assertion; `exercise`, `detail` and `hint` stay available for graders.
    """

    def __init__(self, exercise: str, detail: str, hint: str | None = None) -> None:
        self.exercise = exercise
        self.detail = detail
        self.hint = hint
        message = f"{exercise}: {detail}"
        if hint:
            message = f"{message.rstrip('.')}. Hint: {hint}"
        super().__init__(message)

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of the traceback: the grader's frames are
        # noise to a learner, the message already names the input.
        return [f"✗ {self}"]


class NotAttempted(Exception):
    """The exercise still holds its `raise NotImplementedError(...)` placeholder.

    Distinct from CheckFailed so a grader can report "not attempted" rather than
    "wrong", and so the learner reads an instruction instead of an accusation.
    """

    def __init__(self, exercise: str) -> None:
        self.exercise = exercise
        super().__init__(
            f"{exercise}: not attempted yet — replace the raise NotImplementedError(...) "
            "in the exercise cell with your code, run that cell, then run this one again"
        )

    def _render_traceback_(self) -> list[str]:
        return [f"○ {self}"]


def exercise(name: str | None = None) -> Callable[[_F], _F]:
    """Register a check under `name` (default: the function's name) and make it friendly.

    The decorated check receives whatever the lesson passes (usually the learner's
    function), raises CheckFailed on a wrong answer and returns the number of cases it
    ran (or None: then the number of `call()`s it made is reported). The wrapper:

    * turns a NotImplementedError escaping the learner's code into NotAttempted;
    * turns any other exception into CheckFailed with its type and message (the deep
      traceback is hidden; the message says how to see it);
    * prints one line, `✓ name: N cases passed`, and returns None, so the cell's output
      is the same on every run and nbval can compare it.
    """

    def register(check: _F) -> _F:
        ex_name = name or check.__name__
        if not ex_name.isidentifier() or ex_name.startswith("_"):
            raise ValueError(f"exercise name {ex_name!r} must be a public Python identifier "
                             "(it becomes `check.<name>` in the lessons)")
        if ex_name in _RESERVED:
            raise ValueError(f"exercise name {ex_name!r} is taken by the check framework; "
                             "choose another")
        previous = EXERCISES.get(ex_name)
        if previous is not None and previous.__module__ != check.__module__:
            raise ValueError(f"exercise {ex_name!r} is already registered by "
                             f"{previous.__module__}; exercise names must be unique")

        @functools.wraps(check)
        def run(*args: Any, **kwargs: Any) -> None:
            counter = [0]
            token = _CALLS.set(counter)
            try:
                cases = check(*args, **kwargs)
            except (CheckFailed, NotAttempted):
                raise
            except NotImplementedError:
                raise NotAttempted(ex_name) from None
            except Exception as e:  # learner code (or its odd output) broke the check
                raise CheckFailed(
                    ex_name, f"raised {_exc_text(e)} while being checked",
                    hint="run your code on a small input in a cell of its own to see "
                         "the full traceback",
                ) from None
            finally:
                _CALLS.reset(token)
            n = cases if isinstance(cases, int) and not isinstance(cases, bool) else counter[0]
            if n > 0:
                print(f"✓ {ex_name}: {n} case{'s' if n != 1 else ''} passed")
            else:
                print(f"✓ {ex_name}: passed")

        EXERCISES[ex_name] = run
        return run  # type: ignore[return-value]

    return register


def call(name: str, fn: Callable[..., Any], *args: Any, inputs_desc: str | None = None,
         **kwargs: Any) -> Any:
    """Call the learner's `fn(*args, **kwargs)`, turning its crashes into check outcomes.

    This is where the input is known, so a crash is reported *with* the input that
    caused it. `inputs_desc` is how the input is shown (default: the arguments' reprs).
    """
    counter = _CALLS.get()
    if counter is not None:
        counter[0] += 1
    try:
        return fn(*args, **kwargs)
    except (CheckFailed, NotAttempted):
        raise
    except NotImplementedError:
        raise NotAttempted(name) from None
    except Exception as e:
        desc = inputs_desc if inputs_desc is not None else describe_args(*args, **kwargs)
        raise CheckFailed(
            name, f"on input {desc} your code raised {_exc_text(e)}",
            hint="call your function on that input in a cell of its own to see the full traceback",
        ) from None


def describe_args(*args: Any, **kwargs: Any) -> str:
    """`1, [2, 3], k=4`: a short rendering of a call's arguments for messages."""
    parts = [show(a) for a in args] + [f"{k}={show(v)}" for k, v in kwargs.items()]
    return ", ".join(parts) if parts else "()"


def expect_equal(name: str, inputs_desc: str, expected: Any, got: Any,
                 hint: str | None = None) -> None:
    """Raise CheckFailed unless `got == expected` (tensors: same shape, dtype and values).

    The message points at the first difference of a dict or sequence, because
    "expected a 300-entry dict, got another 300-entry dict" helps nobody.
    """
    if _is_tensor(expected) or _is_tensor(got):
        problem = _tensor_problem(expected, got, exact=True)
        if problem:
            raise CheckFailed(name, _on(inputs_desc) + problem, hint)
        return
    if _same(expected, got):
        return
    detail = f"expected {show(expected)}, got {show(got)}"
    if got is None and expected is not None:
        detail += " (did the function forget to `return`?)"
    elif type(got) is not type(expected) and not (_is_number(got) and _is_number(expected)):
        detail += f" ({_a(type(got).__name__)}; expected {_a(type(expected).__name__)})"
    else:
        where = _first_difference(expected, got)
        if where:
            detail += f"; {where}"
    raise CheckFailed(name, _on(inputs_desc) + detail, hint)


def expect_close(name: str, inputs_desc: str, expected: Any, got: Any, *,
                 rtol: float = 1e-5, atol: float = 1e-6, hint: str | None = None) -> None:
    """Raise CheckFailed unless tensor (or number) `got` matches `expected` within tolerance.

    The order of the explanation follows what to fix first: not a tensor at all, then
    the shape, then the dtype, and only then the values (how many differ, the largest
    difference and where it is).
    """
    if not _is_tensor(expected) and _is_number(expected):
        if not _is_number(got):
            raise CheckFailed(name, _on(inputs_desc) + f"expected a number close to "
                              f"{expected!r}, got {show(got)}", hint)
        if not math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=atol):
            raise CheckFailed(name, _on(inputs_desc) + f"expected {expected!r}, got {got!r} "
                              f"(difference {abs(float(got) - float(expected)):.3g}; "
                              f"tolerance atol={atol:g}, rtol={rtol:g})", hint)
        return
    problem = _tensor_problem(expected, got, exact=False, rtol=rtol, atol=atol)
    if problem:
        raise CheckFailed(name, _on(inputs_desc) + problem, hint)


def expect_type(name: str, inputs_desc: str, expected_type: type | tuple[type, ...], got: Any,
                hint: str | None = None) -> None:
    """Raise CheckFailed unless `isinstance(got, expected_type)`; checked before values so
    that a wrong type is reported as such rather than as a confusing value mismatch."""
    if isinstance(got, expected_type):
        return
    types = expected_type if isinstance(expected_type, tuple) else (expected_type,)
    wanted = " or ".join(_type_name(t) for t in types)
    detail = f"expected {wanted}, got {'None' if got is None else _type_name(type(got))}"
    if got is None:
        detail += " (did the function forget to `return`?)"
    else:
        detail += f": {show(got)}"
    raise CheckFailed(name, _on(inputs_desc) + detail, hint)


def tensors_close(a: Any, b: Any, *, rtol: float, atol: float, same_dtype: bool = False,
                  equal_nan: bool = False) -> bool:
    """True when `a` and `b` are tensors of one shape (and one dtype, if asked) that
    `torch.allclose` accepts; anything else (a list, a wrong shape) is simply not close."""
    import torch

    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and (not same_dtype or a.dtype == b.dtype)
            and bool(torch.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)))


def first_match(got: Any, variants: Sequence[tuple[str, Callable[[], Any]]],
                close: Callable[[Any, Any], bool]) -> str | None:
    """The hint of the first known mistake whose output `close` finds equal to `got`, else
    None. Each variant is computed only when reached; one that cannot run on this input
    (or cannot even be compared with `got`) is not the answer."""
    for hint, compute in variants:
        try:
            if close(got, compute()):
                return hint
        except Exception:
            continue
    return None


def show(value: Any) -> str:
    """A repr short enough for a one-line message; tensors show shape and dtype."""
    if _is_tensor(value):
        head = f"tensor of shape {tuple(value.shape)}, {value.dtype}"
        if value.numel() <= 12:
            head += f": {value.detach().cpu().tolist()}"
        return head
    text = repr(value)
    if len(text) > _MAX_REPR:
        text = f"{text[: _MAX_REPR - 40]} … {text[-30:]}"
    return text


# ---------------------------------------------------------------------------- internals


def _on(inputs_desc: str) -> str:
    return f"on input {inputs_desc} — " if inputs_desc else ""


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _exc_text(e: BaseException) -> str:
    msg = str(e)
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _type_name(t: type) -> str:
    return "torch.Tensor" if t.__module__.startswith("torch") and t.__name__ == "Tensor" else t.__name__


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_tensor(x: Any) -> bool:
    # Avoid importing torch for checks that never touch tensors.
    return type(x).__module__.startswith("torch") and hasattr(x, "shape") and hasattr(x, "dtype")


def _same(expected: Any, got: Any) -> bool:
    try:
        return bool(expected == got)
    except Exception:  # e.g. numpy arrays: truth value is ambiguous
        return False


def _first_difference(expected: Any, got: Any) -> str:
    """Where two dicts or sequences first differ, in words; '' when not applicable."""
    if isinstance(expected, Mapping) and isinstance(got, Mapping):
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing:
            k = missing[0]
            return f"missing key {show(k)} (expected value {show(expected[k])})" + (
                f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        if extra:
            k = extra[0]
            return f"unexpected key {show(k)} (value {show(got[k])})" + (
                f" and {len(extra) - 1} more" if len(extra) > 1 else "")
        for k in expected:
            if not _same(expected[k], got[k]):
                return f"at key {show(k)}: expected {show(expected[k])}, got {show(got[k])}"
        return ""
    if (isinstance(expected, Sequence) and isinstance(got, Sequence)
            and not isinstance(expected, str) and not isinstance(got, str)):
        for i, (e, g) in enumerate(zip(expected, got, strict=False)):
            if not _same(e, g):
                return f"first difference at index {i}: expected {show(e)}, got {show(g)}"
        if len(expected) != len(got):
            return f"expected length {len(expected)}, got length {len(got)}"
    return ""


def _tensor_problem(expected: Any, got: Any, *, exact: bool, rtol: float = 0.0,
                    atol: float = 0.0) -> str:
    """Why `got` does not match tensor `expected`, or '' when it does."""
    import torch

    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor of shape {tuple(expected.shape)}, got {show(got)}"
    if not isinstance(expected, torch.Tensor):
        return f"expected {show(expected)}, got {show(got)}"
    if got.shape != expected.shape:
        detail = f"expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}"
        if got.dim() >= 2 and tuple(got.shape) == tuple(reversed(expected.shape)):
            detail += " (transposed?)"
        elif got.numel() == expected.numel():
            detail += " (same number of elements: a missing or extra reshape/view?)"
        return detail
    if got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype}, got {got.dtype}"
    e = expected.detach().cpu()
    g = got.detach().cpu()
    if e.numel() == 0:
        return ""
    if exact or not (e.is_floating_point() or e.is_complex()):
        bad = g != e
        if e.is_floating_point():
            bad &= ~(torch.isnan(g) & torch.isnan(e))
    else:
        bad = ~torch.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return ""
    if e.is_floating_point() or e.is_complex():
        diff = (g - e).abs().double()
        diff = torch.where(torch.isnan(diff), torch.full_like(diff, math.inf), diff)
        diff = torch.where(bad, diff, torch.zeros_like(diff))
        flat = int(torch.argmax(diff))
    else:
        diff = None
        flat = int(torch.nonzero(bad.flatten())[0])
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), e.shape))
    where = index if len(index) != 1 else index[0]
    ev, gv = e.flatten()[flat].item(), g.flatten()[flat].item()
    detail = f"{n_bad} of {e.numel()} values differ"
    nan_involved = isinstance(gv, float) and isinstance(ev, float) and (
        math.isnan(gv) or math.isnan(ev))
    if diff is not None and not nan_involved:
        detail += f"; largest difference {float(diff.flatten()[flat]):.3g} at index {where}"
    elif nan_involved:
        detail += f"; a NaN at index {where}"
    else:
        detail += f"; first at index {where}"
    detail += f": expected {ev!r}, got {gv!r}"
    if not exact and diff is not None:
        detail += f" (tolerance atol={atol:g}, rtol={rtol:g})"
    return detail


# ------------------------------------------------------------------------ a demo check


@exercise("square")
def square(fn: Callable[[float], float]) -> int:
    """Demo check: does `fn(x)` return `x * x`? It exists to test the framework itself
    (and to show lesson authors the shape of a check)."""
    cases = [0, 1, -3, 7, 0.5, 12345]
    for x in cases:
        desc = f"x={x!r}"
        got = call("square", fn, x, inputs_desc=desc)
        expect_type("square", desc, (int, float), got, hint="return a number")
        hint = ("x * 2 doubles x; squaring multiplies x by itself" if got == 2 * x
                else "the square of x is x * x (or x ** 2)")
        expect_equal("square", desc, x * x, got, hint=hint)
    return len(cases)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run a check's PyTorch code on one CPU thread, then restore the learner's setting.

    A check's tensors are tiny, so a second thread brings only synchronisation; on a busy
    shared machine (Binder, a CI runner) waiting for it makes a 50 ms check take seconds.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
