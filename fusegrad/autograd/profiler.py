"""``autograd.profiler.profile``: times every primitive call made while it is active."""

from __future__ import annotations

import time
from collections import defaultdict

from fusegrad.interpreter import Wrapper, current, interpreting


class FunctionEventAvg:
    def __init__(self, key):
        self.key = key
        self.count = 0
        self.self_cpu_time_total = 0.0  # microseconds, as PyTorch reports
        self.cpu_time_total = 0.0

    @property
    def cpu_time(self):
        return self.cpu_time_total / self.count if self.count else 0.0

    def __repr__(self):
        return (f"<FunctionEventAvg key={self.key} self_cpu_time={self.self_cpu_time_total:.3f}us "
                f"count={self.count}>")


class EventList(list):
    def table(self, sort_by=None, row_limit=100, **_):
        rows = list(self)
        if sort_by:
            attr = sort_by.replace("self_cuda", "self_cpu").replace("cuda", "cpu")
            rows.sort(key=lambda e: getattr(e, attr, 0.0), reverse=True)
        rows = rows[:row_limit] if row_limit and row_limit > 0 else rows
        total = sum(e.self_cpu_time_total for e in self) or 1.0
        headers = ["Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total",
                   "CPU time avg", "# of Calls"]
        width = max([len(h) for h in headers[:1]] + [len(e.key) for e in rows]) + 2
        line = "-" * width + "  " + "  ".join(["-" * 12] * (len(headers) - 1))
        out = [line, headers[0].rjust(width) + "  " +
               "  ".join(h.rjust(12) for h in headers[1:]), line]
        for e in rows:
            out.append(e.key.rjust(width) + "  " + "  ".join(s.rjust(12) for s in [
                f"{100 * e.self_cpu_time_total / total:.2f}%", _fmt_us(e.self_cpu_time_total),
                f"{100 * e.cpu_time_total / total:.2f}%", _fmt_us(e.cpu_time_total),
                _fmt_us(e.cpu_time), str(e.count)]))
        out += [line, f"Self CPU time total: {_fmt_us(total)}", ""]
        return "\n".join(out)


def _fmt_us(us):
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


class _Timed(Wrapper):
    """Times each primitive the interpreter it wraps runs, as one ``aten::<op>`` event."""

    def __init__(self, inner, events):
        super().__init__(inner)
        self.events = events

    def run(self, prim, args, params):
        t0 = time.perf_counter()
        out = self.inner.run(prim, args, params)
        self.events["aten::" + prim.aten_name].append((time.perf_counter() - t0) * 1e6)
        return out


class profile:  # noqa: N801  (PyTorch's name)
    """Context manager recording one event per primitive call (named ``aten::<op>``)."""

    def __init__(self, enabled=True, *, use_cuda=False, use_device=None, record_shapes=False,
                 profile_memory=False, with_stack=False, **_):
        self.enabled = enabled
        self._events = defaultdict(list)

    def __enter__(self):
        if self.enabled:
            self._scope = interpreting(_Timed(current(), self._events))
            self._scope.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._scope.__exit__(*exc)
        return False

    def key_averages(self, group_by_input_shape=False):
        out = EventList()
        for key in sorted(self._events):
            e = FunctionEventAvg(key)
            times = self._events[key]
            e.count = len(times)
            e.self_cpu_time_total = e.cpu_time_total = sum(times)
            out.append(e)
        return out

    def events(self):
        return self.key_averages()

    def table(self, **kwargs):
        return self.key_averages().table(**kwargs)
