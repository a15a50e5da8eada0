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
    "expect_contract",
    "expect_type",
    "hint",
    "square",
]

#: Every registered check, by exercise name; `course.checks.<name>` looks names up here.
EXERCISES: dict[str, Callable[..., None]] = {}

# Names of the framework itself; an exercise with one of these names would be shadowed.
_RESERVED = (frozenset(__all__) - {"square"}) | {"checks", "describe_args", "load_all", "show"}

#: Further help per exercise, most general first; `hint(name)` or a second failure of the
#: same check reveals the next level. Filled by `@exercise(name, hints=...)`.
HINTS: dict[str, tuple[str, ...]] = {}
# How many failures each exercise has had, and how many hint levels were shown (this session).
_FAILURES: dict[str, int] = {}
_SHOWN: dict[str, int] = {}

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
        self.more: str | None = None  # a further hint level, added on a repeated failure
        message = f"{exercise}: {detail}"
        if hint:
            message = f"{message.rstrip('.')}. Hint: {hint}"
        super().__init__(message)

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of the traceback: the grader's frames are
        # noise to a learner, the message already names the input.
        lines = [f"✗ {self}"]
        if self.more:
            lines.append(f"  More help: {self.more}")
        return lines


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


def exercise(name: str | None = None, hints: Sequence[str] = ()) -> Callable[[_F], _F]:
    """Register a check under `name` (default: the function's name) and make it friendly.

    The decorated check receives whatever the lesson passes (usually the learner's
    function), raises CheckFailed on a wrong answer and returns the number of cases it
    ran (or None: then the number of `call()`s it made is reported). The wrapper:

    * turns a NotImplementedError escaping the learner's code into NotAttempted;
    * turns any other exception into CheckFailed with its type and message (the deep
      traceback is hidden; the message says how to see it);
    * prints one line, `✓ name: N cases passed`, and returns None, so the cell's output
      is the same on every run and nbval can compare it;
    * from the second failure on, adds the next level of `hints` (general help that
      never spells out the answer line) to the failure; `hint(name)` shows it on demand.
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
            except CheckFailed as e:
                _FAILURES[ex_name] = _FAILURES.get(ex_name, 0) + 1
                if _FAILURES[ex_name] >= 2 and e.more is None:
                    e.more = _next_hint(ex_name)
                raise
            except NotAttempted:
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
        HINTS[ex_name] = tuple(hints)
        return run  # type: ignore[return-value]

    return register


def call(name: str, fn: Callable[..., Any], *args: Any, inputs_desc: str | None = None,
         may_change: Sequence[int | str] = (), **kwargs: Any) -> Any:
    """Call the learner's `fn(*args, **kwargs)`, turning its crashes into check outcomes.

    This is where the input is known, so a crash is reported *with* the input that
    caused it. `inputs_desc` is how the input is shown (default: the arguments' reprs).

    Every argument that holds data (lists, tuples, dicts, sets, tensors, arrays) must come
    back unchanged: a function that edits its caller's list or tensor in place breaks the
    cells that use that input afterwards, so it fails here, naming the argument. Arguments
    the exercise is *meant* to change (a model, an optimizer) are listed in `may_change`
    by position (from 0) or keyword.
    """
    counter = _CALLS.get()
    if counter is not None:
        counter[0] += 1
    before = {key: _snapshot(value) for key, value in [*enumerate(args), *kwargs.items()]
              if key not in may_change}
    if inputs_desc is None:  # described now: the call may change what the arguments show
        inputs_desc = describe_args(*args, **kwargs)
    try:
        result = fn(*args, **kwargs)
    except (CheckFailed, NotAttempted):
        raise
    except NotImplementedError:
        raise NotAttempted(name) from None
    except Exception as e:
        raise CheckFailed(
            name, f"on input {inputs_desc} your code raised {_exc_text(e)}",
            hint="call your function on that input in a cell of its own to see the full traceback",
        ) from None
    for key, snap in before.items():
        if snap is _NO_SNAPSHOT:
            continue
        now = args[key] if isinstance(key, int) else kwargs[key]
        if not _unchanged(snap, now):
            which = f"argument {key + 1}" if isinstance(key, int) else f"argument {key}="
            raise CheckFailed(
                name, f"on input {inputs_desc} your function changed its {which} in place: it was "
                      f"{show(snap)} before the call and {show(now)} after",
                hint="do not modify the caller's data (no .append/.extend/+= on an input list, "
                     "no in-place tensor ops such as /= or .add_() on an input); build a new "
                     "list or tensor instead, because later cells reuse the same input")
    return result


def hint(name: str) -> None:
    """Print the next level of help for exercise `name` (each call reveals one more)."""
    from course import checks  # every lesson's checks, so any exercise name is known

    checks.load_all()
    if name not in EXERCISES:
        raise KeyError(f"no exercise named {name!r}; available: {', '.join(sorted(EXERCISES))}")
    print(f"{name}: {_next_hint(name)}")


def expect_contract(name: str, inputs_desc: str, spec: Any, got: Any,
                    hint: str | None = None) -> None:
    """Raise CheckFailed unless `got` has exactly the type `spec` that the docstring promises.

    `spec` is written like a type hint: `list[list[int]]`, `tuple[list[int], list[int]]`,
    `dict[str, int]`, `float`, `torch.Tensor`, `str | None`. Matching is strict, because
    later cells rely on the contract: a tuple is not a list, a bool is not an int, a dict
    is not a list, a 0-dim tensor is not a float, and no subclass (whose `==` could say
    anything) stands in for a list or a tensor. `float` accepts Python and NumPy floats
    (and ints); `int` accepts Python and NumPy integers.
    """
    problem = _contract_problem(spec, got, "")
    if problem is None:
        return
    detail = f"expected {_spec_name(spec)}, got {problem}"
    if got is None:
        detail += " (did the function forget to `return`?)"
    raise CheckFailed(name, _on(inputs_desc) + detail, hint)


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


# Tolerances for float32 results that a valid implementation may compute in another order.
FLOAT_RTOL = 1e-4
FLOAT_ATOL = 1e-5


def float_close(a: Any, b: Any) -> bool:
    """`tensors_close` at the float32 tolerances above."""
    return tensors_close(a, b, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)


def first_float_match(got: Any, variants: Sequence[tuple[str, Callable[[], Any]]]) -> str | None:
    """The hint of the first known mistake whose output is `float_close` to `got`, else None."""
    return first_match(got, variants, float_close)


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
    """Strict equality: containers must be of the very same type all the way down (a tuple
    does not equal a list, and an object whose `__eq__` always says True equals nothing)."""
    if _is_number(expected) and _is_number(got):
        return expected == got
    if type(expected) is not type(got):
        return False
    if isinstance(expected, (list, tuple)):
        return len(expected) == len(got) and all(map(_same, expected, got))
    if isinstance(expected, dict):
        return expected.keys() == got.keys() and all(_same(v, got[k]) for k, v in expected.items())
    try:
        return bool(expected == got)
    except Exception:  # e.g. numpy arrays: truth value is ambiguous
        return False


# ---------------------------------------------------------------- contracts and copies

_NO_SNAPSHOT = object()


def _snapshot(value: Any) -> Any:
    """A deep copy of an argument's data, to compare after the call; tensors are cloned.

    Models, optimizers, generators and functions are not data the learner should compare,
    and may legitimately change: they get no snapshot.
    """
    import copy

    if isinstance(value, (str, bytes, int, float, complex, bool, type(None), range)):
        return _NO_SNAPSHOT  # immutable
    if _is_tensor(value):
        return value.detach().clone()
    if isinstance(value, (list, tuple, dict, set, bytearray)) or type(value).__module__ == "numpy":
        try:
            return copy.deepcopy(value)
        except Exception:
            return _NO_SNAPSHOT
    return _NO_SNAPSHOT


def _unchanged(before: Any, now: Any) -> bool:
    import numpy as np

    if _is_tensor(before):
        import torch

        return (_is_tensor(now) and now.shape == before.shape and now.dtype == before.dtype
                and bool(torch.equal(now.detach(), before)
                         or (before.is_floating_point()
                             and torch.equal(torch.nan_to_num(now.detach(), nan=0.5),
                                             torch.nan_to_num(before, nan=0.5)))))
    if isinstance(before, np.ndarray):
        return (isinstance(now, np.ndarray) and now.shape == before.shape
                and bool(np.array_equal(now, before, equal_nan=before.dtype.kind in "fc")))
    if type(before) is not type(now):
        return False
    if isinstance(before, (list, tuple)):
        return len(before) == len(now) and all(map(_unchanged, before, now))
    if isinstance(before, dict):
        return before.keys() == now.keys() and all(_unchanged(v, now[k]) for k, v in before.items())
    try:
        return bool(before == now)
    except Exception:
        return False


def _spec_name(spec: Any) -> str:
    import types
    import typing

    origin = typing.get_origin(spec)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_spec_name(a) for a in typing.get_args(spec))
    if origin is not None:
        args = typing.get_args(spec)
        inner = ", ".join("..." if a is Ellipsis else _spec_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if spec is None or spec is type(None):
        return "None"
    return _type_name(spec) if isinstance(spec, type) else str(spec)


def _kind(got: Any) -> str:
    return "a torch.Tensor" if _is_tensor(got) else _a(type(got).__name__)


def _contract_problem(spec: Any, got: Any, where: str) -> str | None:
    """None if `got` matches `spec`; else what it is instead, with the path to the fault."""
    import types
    import typing

    at = f" at {where}" if where else ""
    if got is None and not (spec is None or spec is type(None)):
        none_ok = typing.get_origin(spec) in (typing.Union, types.UnionType) and any(
            a is type(None) for a in typing.get_args(spec))
        if not none_ok:
            return f"None{at}"
    origin = typing.get_origin(spec)
    if origin in (typing.Union, types.UnionType):
        problems = [_contract_problem(a, got, where) for a in typing.get_args(spec)]
        return None if any(p is None for p in problems) else min(problems, key=len)
    if spec is None or spec is type(None):
        return None if got is None else f"{_kind(got)}{at}: {show(got)}"
    if spec is Any:
        return None
    if origin is None:
        if _matches_leaf(spec, got):
            return None
        return f"{_kind(got)}{at}: {show(got)}"
    if type(got) is not origin:
        return f"{_kind(got)}{at}: {show(got)}"
    args = typing.get_args(spec)
    if origin is list or origin is set or origin is frozenset:
        for i, item in enumerate(got):
            p = _contract_problem(args[0], item, f"{where}[{i}]" if origin is list else where)
            if p is not None:
                return _nested(origin, p)
        return None
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            items = [(args[0], g) for g in got]
        else:
            if len(got) != len(args):
                return f"a tuple of {len(got)} items{at}: {show(got)} (expected {len(args)})"
            items = list(zip(args, got, strict=True))
        for i, (s, g) in enumerate(items):
            p = _contract_problem(s, g, f"{where}[{i}]")
            if p is not None:
                return _nested(origin, p)
        return None
    if origin is dict:
        for k, v in got.items():
            p = _contract_problem(args[0], k, f"{where} (a key)")
            if p is None:
                p = _contract_problem(args[1], v, f"{where}[{k!r}]")
            if p is not None:
                return _nested(origin, p)
        return None
    return None if isinstance(got, origin) else f"{_kind(got)}{at}: {show(got)}"


def _nested(origin: type, problem: str) -> str:
    return f"{_a(origin.__name__)} holding {problem}"


def _matches_leaf(spec: Any, got: Any) -> bool:
    import numpy as np

    if spec is int:
        return (type(got) is int) or isinstance(got, np.integer)
    if spec is float:
        return type(got) in (int, float) or isinstance(got, (np.floating, np.integer))
    if spec is bool:
        return type(got) is bool or isinstance(got, np.bool_)
    if isinstance(spec, type) and spec.__name__ == "Tensor" and spec.__module__.startswith("torch"):
        return type(got).__name__ in ("Tensor", "Parameter") and type(got).__module__.startswith("torch")
    if spec in (list, tuple, dict, set, str, bytes):
        return type(got) is spec
    return isinstance(spec, type) and isinstance(got, spec)


def _next_hint(name: str) -> str:
    """The next unseen level of help for `name` (and remember that it was shown)."""
    levels = HINTS.get(name, ())
    shown = _SHOWN.get(name, 0)
    if shown < len(levels):
        _SHOWN[name] = shown + 1
        return f"(level {shown + 1} of {len(levels)}) {levels[shown]}"
    if levels:
        return (f"that was all {len(levels)} levels of help; re-read the exercise's docstring and "
                "run your function by hand on the failing input")
    return "run your function by hand on the failing input and compare with the docstring's example"


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
