"""ccactors' side-by-side benchmark: the Claude Agent SDK alone and ccactors, same CLI,
same offline upstream, one run (``just bench``; ``python -m benchmarks --help``).

Modules by idea: ``server`` (the processes under test and a turn over HTTP), ``direct``
(the SDK-alone baseline), ``scenarios`` (latency scenarios), ``load`` (concurrent load,
opening many sessions, memory per hibernated session), ``measure`` (timings, CPU, the
wait for a quiet machine), ``plan`` (counts), ``report`` (the table, issue 12's figures
and targets).
"""
