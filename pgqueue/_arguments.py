"""Checking a task's kwargs against its job's signature at enqueue, before anything is written.

Every job runs as ``job(consumer, **kwargs)``: the parameters after the consumer are what a
task may carry. :class:`ArgumentCheck` reads them once per job (``inspect.signature`` is slow)
and then checks each task's kwargs with two set operations, so bulk enqueue stays fast.

The rule (see :meth:`TaskBackend.queue_task`):

* an argument the job has no parameter for is refused, unless the job takes ``**kwargs``;
* a parameter without a default that the kwargs do not give is refused;
* a job whose signature cannot be read (a builtin, a C extension) accepts anything.

A dict passed positionally, ``queue_task("resize", {"path": "a.png"})``, lands in
``meta_params`` and leaves the kwargs empty: when the job has required parameters this is
refused as a missing argument, and when the dict's keys are parameters of the job the error
says that they went to ``meta_params``. A job without required parameters cannot tell such a
dict from real meta params (``{"user": "bob"}``) and accepts it.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import JobArgumentError

_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class ArgumentCheck:
    """The parameters of one job after its consumer, read once from its function.

    :param jobname: named in the errors.
    :param func: the callable the worker calls as ``func(consumer, **kwargs)``.
    """

    __slots__ = ("any_keyword", "jobname", "names", "positional", "required", "shown")

    def __init__(self, jobname: str, func: Callable[..., Any]) -> None:
        self.jobname = jobname
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):  # no readable signature: accept anything
            params = [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
        if params and params[0].kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            params = params[1:]  # the consumer
        keyword = [p for p in params if p.kind in _KEYWORD]
        #: Names a task's kwargs may use.
        self.names = frozenset(p.name for p in keyword)
        #: Names a task's kwargs must give, including positional-only ones (never givable).
        self.required = frozenset(
            p.name
            for p in params
            if p.default is inspect.Parameter.empty
            and p.kind in (*_KEYWORD, inspect.Parameter.POSITIONAL_ONLY)
        )
        #: Names in order that positional arguments of typed enqueue bind to.
        self.positional = tuple(
            p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        self.any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        plain = [p.replace(annotation=inspect.Parameter.empty) for p in params]
        self.shown = str(inspect.Signature(plain))

    def __call__(
        self, kwargs: Mapping[str, Any], meta_params: Mapping[str, Any] | None = None
    ) -> None:
        """Raise :class:`JobArgumentError` unless ``kwargs`` bind to the job's parameters.

        ``meta_params`` only improves the message for a missing argument (see the module).
        """
        keys = kwargs.keys()
        if not self.any_keyword:
            unknown = keys - self.names
            if unknown:
                raise self._unknown(sorted(unknown)[0])
        missing = self.required - keys
        if missing:
            raise self._missing(sorted(missing)[0], meta_params)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with ``args`` bound by position to the job's parameters (typed enqueue
        accepts what calling the function accepts); raises :class:`JobArgumentError` for too
        many positional arguments or one given twice."""
        if not args:
            return kwargs
        if len(args) > len(self.positional):
            raise self._error(
                f"takes {len(self.positional)} positional arguments after the consumer, "
                f"but {len(args)} were given"
            )
        bound = dict(zip(self.positional, args, strict=False))
        twice = bound.keys() & kwargs.keys()
        if twice:
            raise self._error(f"got multiple values for argument {sorted(twice)[0]!r}")
        bound.update(kwargs)
        return bound

    def _missing(self, name: str, meta_params: Mapping[str, Any] | None) -> JobArgumentError:
        hint = ""
        if meta_params and (self.names & meta_params.keys()):
            hint = (
                f"; the dict {dict(meta_params)!r:.80} went to meta_params (the second "
                "positional argument of queue_task): pass the job's arguments as keywords, "
                f"queue_task({self.jobname!r}, {name}=...)"
            )
        return self._error(f"is missing the required argument {name!r}{hint}")

    def _unknown(self, name: str) -> JobArgumentError:
        close = difflib.get_close_matches(name, sorted(self.names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return self._error(f"has no parameter {name!r}{hint}")

    def _error(self, what: str) -> JobArgumentError:
        return JobArgumentError(
            f"job {self.jobname!r} {what}; it takes {self.shown} after the consumer; "
            "nothing was queued"
        )
