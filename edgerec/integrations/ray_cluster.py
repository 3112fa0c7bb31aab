"""Joining a Ray cluster and sizing the actor pool for ``predict --ray`` (edgerec.integrations.ray): where
``--address`` points is probed with a bound before Ray tries (its own join can wait forever), the actors must fit
a node, and a failure that comes back through Ray is told in edgerec's words."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from collections.abc import Iterable
from typing import Any

from edgerec.engines.base import first_line
from edgerec.errors import EdgeRecError

log = logging.getLogger(__name__)

# how long the driver waits for a TCP answer from --address before it gives up (Ray's own connect can wait forever);
# EDGEREC_RAY_CONNECT_TIMEOUT overrides it (read when a run starts: connect_timeout())
CONNECT_TIMEOUT_S = 10.0
CLIENT_REFUSED = ("Ray Data does not run through Ray Client (ray://): run edgerec on a node of the cluster with "
                  "--address auto (or HEAD:6379), or submit it there with 'ray job submit --address "
                  "http://HEAD:8265 -- edgerec predict ... --ray --address auto'")


def actor_slots(node_cpus: Iterable[float], num_cpus: int) -> int:
    """How many actors of ``num_cpus`` CPUs each fit on nodes with these CPUs (an actor never spans nodes)."""
    return sum(int(c + 1e-9) // num_cpus for c in node_cpus if c and num_cpus > 0)


def _node_cpus(ray: Any) -> list[float]:
    try:
        return [float(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    except Exception:  # an older client without node listing: the cluster as one node
        return [float(ray.cluster_resources().get("CPU", 0))]


def check_actors(node_cpus: list[float], num_cpus: int, concurrency: int | None) -> int:
    """The actor pool's size: ``concurrency``, or as many as fit; an EdgeRecError when none or fewer fit (Ray would
    wait for them forever)."""
    fit = actor_slots(node_cpus, num_cpus)
    largest = max(node_cpus, default=0)
    where = (f"the largest of the {len(node_cpus)} Ray nodes has {largest:g}" if len(node_cpus) > 1
             else f"this Ray cluster has {largest:g}")
    if largest == 0:  # no node has CPUs yet (an autoscaling cluster without workers): ask, and let it scale up
        log.warning("the Ray cluster has no CPUs yet: asking for %d actor(s) of %d CPUs; the job waits until a node "
                    "that has them joins", concurrency or 1, num_cpus)
        return concurrency or 1
    if fit == 0:
        raise EdgeRecError(f"--threads {num_cpus}: each actor needs {num_cpus} CPUs on one node, and {where}: "
                           f"give --threads {max(1, int(largest))} or less")
    if concurrency is not None and concurrency > fit:
        raise EdgeRecError(f"{concurrency} actors of {num_cpus} CPUs do not fit: the Ray cluster's nodes hold "
                           f"{fit} (CPUs per node: {', '.join(f'{c:g}' for c in node_cpus)})")
    return concurrency or fit


def address_endpoint(address: str | None) -> tuple[str, int] | None:
    """(host, port) that ``address`` names: ``HOST:PORT`` (a GCS); None for ``auto``, ``local``, no address or
    a URL (nothing to probe)."""
    if not address or address in ("auto", "local") or "://" in address:
        return None
    host, sep, port = address.split("/", 1)[0].rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _probe(address: str, timeout: float, given: str | None = None) -> None:
    """A TCP connect to ``address`` within ``timeout``: Ray's own join waits without limit for a host where nothing
    answers. ``given``: the address as the user wrote it (``auto``), where it differs."""
    end = address_endpoint(address)
    if end is None:
        return
    try:
        socket.create_connection(end, timeout=timeout).close()
    except OSError as exc:
        why = (f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError)
               else (exc.strerror or type(exc).__name__).lower())
        raise EdgeRecError(f"--address {given or address}: nothing answers at {end[0]}:{end[1]} ({why}); is a "
                           "Ray head running there (ray start --head)?") from None


def _auto_address() -> str | None:
    """The GCS address ``auto`` stands for (RAY_ADDRESS, or the cluster ``ray start`` recorded on this node); None
    when there is none, and ray.init says so."""
    try:
        from ray._private import services

        return services.canonicalize_bootstrap_address("auto")
    except Exception:  # no cluster recorded, or Ray moved its helper: ray.init reports it
        return None


def ray_error(exc: BaseException) -> str:
    """One line for an exception out of a Ray job: the edgerec error inside it (an actor whose model did not load)
    where there is one, else the exception's first line."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, EdgeRecError) and not type(e).__module__.startswith("ray"):
            return first_line(e)
        stack += [c for c in (getattr(e, "cause", None), e.__cause__, e.__context__) if isinstance(c, BaseException)]
    found = re.findall(r"edgerec\.errors\.\w+: ([^\n]+)", str(exc))
    if found:
        return found[-1].strip()
    return f"{type(exc).__name__}: {first_line(exc)}"


def connect_timeout() -> float:
    """CONNECT_TIMEOUT_S, or EDGEREC_RAY_CONNECT_TIMEOUT when set: seconds above 0 (else an EdgeRecError)."""
    raw = os.environ.get("EDGEREC_RAY_CONNECT_TIMEOUT")
    if raw is None:
        return CONNECT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value != value or value == float("inf"):
        raise EdgeRecError(f"EDGEREC_RAY_CONNECT_TIMEOUT={raw!r}: give the seconds to wait, a number above 0")
    return value


def _bound_the_join(address: str | None) -> None:
    """Before Ray is imported (its C++ config reads the environment then): joining a cluster tries its GCS once,
    for CONNECT_TIMEOUT_S, where Ray would retry for minutes at a port that answers but is no GCS. The
    environment's own settings win; once Ray is imported in this process (an API caller's), nothing changes."""
    target = address or os.environ.get("RAY_ADDRESS")
    if "ray" in sys.modules or not target or target == "local" or "://" in target:
        return  # nothing to join, or a URL check_address refuses
    os.environ.setdefault("RAY_py_gcs_connect_timeout_s", str(max(1, int(connect_timeout()))))
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "1")


def check_address(address: str | None) -> None:
    """Whether anything answers where ``address`` points (a TCP connect with a bound): before the inputs are listed
    and the model loaded, so a wrong address is an error in seconds. A Ray Client address (``ray://``) is refused:
    Ray Data does not run through Ray Client (its driver needs a core worker; ray-project/ray#48682)."""
    given = address
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address.lower().startswith("ray://"):
        where = f"--address {address}" if given else f"RAY_ADDRESS={address}"
        raise EdgeRecError(f"{where}: {CLIENT_REFUSED}")
    if address and "://" in address:
        where = f"--address {address}" if given else f"RAY_ADDRESS={address}"
        raise EdgeRecError(f"{where}: give 'auto', 'local' or a head's HOST:PORT (the GCS port, 6379 by default)")
    if address == "auto":  # a cluster recorded on this node may have stopped since: probe where it was
        recorded = _auto_address()
        if recorded:
            _probe(recorded, connect_timeout(), given=f"auto (the cluster recorded at {recorded})")
    elif address:
        _probe(address, connect_timeout())


def _join(ray: Any, address: str | None) -> None:
    if ray.is_initialized():
        if _client_connected(ray):  # a caller's own ray.init("ray://..."): Ray Data would fail deep inside
            raise EdgeRecError(f"this process is connected to Ray through Ray Client: {CLIENT_REFUSED}")
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except Exception as exc:  # no cluster at that address
        first = first_line(exc)
        raise EdgeRecError(f"--address {address or '(local)'}: cannot start or join Ray ({first})") from None


def _client_connected(ray: Any) -> bool:
    """Whether this process reached Ray through Ray Client (``ray.init("ray://...")``)."""
    if getattr(ray, "__name__", None) != "ray":  # a stand-in for Ray (tests): no client
        return False
    try:
        from ray.util.client import ray as client

        return bool(client.is_connected())
    except Exception:  # a Ray without the client module: not a client
        return False
