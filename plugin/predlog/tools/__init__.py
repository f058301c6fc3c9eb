"""What never runs inside a model server: the ``predlog`` command and what it runs.

``cli`` (the commands), ``analytics`` (investigate, evaluate, drift, replay, on DuckDB
or Spark), ``compact`` (rewriting small files into large ones, table housekeeping),
``sink`` (the Kafka consumer behind ``predlog sink``) and ``bench`` (a service's latency
with predlog on and off). Nothing on the request path,
in the flusher or in a sink may import from here.
"""

from __future__ import annotations
