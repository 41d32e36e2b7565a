"""``analog-hep serve``: serve one driver (the emulator or a lab's chip) over TCP."""

from __future__ import annotations

import argparse
import signal
import socket
import sys

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a chip (any registered driver) over TCP for --driver tcp://HOST:PORT",
        description=(
            "Serve the chip of CIRCUIT through a driver (the emulator by default) with the "
            "analog-hep wire protocol (docs/drivers.md). The first line on stdout is "
            "'listening on HOST:PORT'. One client controls the chip at a time; the driver is "
            "opened with the client's run seed. Binding anything but loopback needs "
            "--token-file. SIGINT or SIGTERM stop the server cleanly."
        ),
    )
    p.add_argument("circuit", help="circuit YAML file or name (e.g. circuits/digits.yaml)")
    p.add_argument("--port", type=int, required=True, help="TCP port (0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--driver", default="emulator", help="driver to serve: NAME[:KEY=VALUE,...]")
    p.add_argument(
        "--token-file", help="file holding a shared secret (>= 16 characters) clients must know"
    )
    p.add_argument(
        "--max-frame-mib", type=float, default=256.0, help="largest request payload (MiB)"
    )
    p.add_argument(
        "--idle-timeout-s",
        type=float,
        default=3600.0,
        help="close a client's connection after this long without a request (s)",
    )
    p.add_argument(
        "--handshake-timeout-s",
        type=float,
        default=5.0,
        help="time a new connection has to authenticate before it is closed (s)",
    )
    p.add_argument(
        "--max-preauth",
        type=int,
        default=16,
        help="unauthenticated connections held at once; the oldest is closed for a new one",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..drivers import DriverServer, read_token_file
    from ..errors import SpecError
    from ..spec import load_circuit

    if not 0 <= args.port < 65536:
        raise SpecError(f"--port: expected 0..65535, found {args.port}")
    if not all(v > 0 for v in (args.max_frame_mib, args.idle_timeout_s, args.handshake_timeout_s)):
        raise SpecError(
            "--max-frame-mib, --idle-timeout-s and --handshake-timeout-s must be positive"
        )
    if args.max_preauth < 1:
        raise SpecError(f"--max-preauth: expected at least 1, found {args.max_preauth}")
    circuit = load_circuit(args.circuit)
    token = read_token_file(args.token_file) if args.token_file else None
    server = DriverServer(
        circuit,
        driver=args.driver,
        host=args.host,
        port=args.port,
        token=token,
        max_frame_bytes=int(args.max_frame_mib * (1 << 20)),
        idle_timeout_s=args.idle_timeout_s,
        handshake_timeout_s=args.handshake_timeout_s,
        max_preauth=args.max_preauth,
    )
    host, port = server.address
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on {shown}:{port}", flush=True)
    reach = socket.gethostname() if host in ("0.0.0.0", "::") else shown
    print(
        f"serving {args.driver} for circuit {circuit.spec.name!r}; clients use --driver "
        f"tcp://{reach}:{port}" + ("?token_file=FILE" if token else ""),
        file=sys.stderr,
        flush=True,
    )

    def stop(signum: int, frame: object) -> None:
        del frame
        print(f"{signal.Signals(signum).name}: stopping", file=sys.stderr, flush=True)
        server.request_stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return 0
