"""``python -m ketch_server``: parse settings and run the server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from ketch_server.logs import configure_logging
from ketch_server.settings import add_arguments, from_args


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ketch server", description="Run the ketch server.")
    add_arguments(parser)
    settings = from_args(parser.parse_args(argv))
    configure_logging(settings.log_level, as_json=settings.log_json)
    from ketch_server.app import serve

    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
