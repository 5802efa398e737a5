"""``python -m spaces_config {render,check,write,files,deploy}``: the Space's config on the command line.

* ``render``  prints the front matter the config renders to.
* ``check``   exits 0 when README.md's front matter is the render, else 1 with a unified diff.
* ``write``   rewrites README.md's front matter in place (the rest of the file is kept).
* ``files``   lists the files ``deploy`` would upload.
* ``deploy --space OWNER/NAME [--hardware HW] [--private] [--token T] [--api-key-from-env VAR]``
  creates or updates the Space and prints its URL. The token defaults to huggingface_hub's
  (``HF_TOKEN`` or ``hf auth login``); prefer that to ``--token`` (visible in the process list).
  ``--api-key-from-env VAR`` sets the Space secret UPSCALE_LAB_API_KEY from ``$VAR``.

Exit codes: 0 done, 1 front matter differs (check, deploy), 2 usage or input errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from spaces_config import (
    API_KEY_SECRET,
    ROOT,
    FrontMatterError,
    check_readme,
    default_config,
    deploy,
    front_matter_diff,
    render_front_matter,
    space_files,
    write_readme,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spaces_config", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="repository root holding README.md and requirements.txt (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("render", help="print the front matter the Space config renders to")
    sub.add_parser("check", help="exit 1 with a diff when README.md's front matter differs from the render")
    sub.add_parser("write", help="rewrite README.md's front matter from the Space config")
    sub.add_parser("files", help="list the files deploy would upload")
    dep = sub.add_parser("deploy", help="create or update the Space and upload the app")
    dep.add_argument("--space", required=True, metavar="OWNER/NAME", help="the Space's repo id")
    dep.add_argument("--hardware", help="request this hardware (e.g. t4-small); default: only suggest it")
    dep.add_argument("--private", action="store_true", help="create the Space private (only at creation)")
    dep.add_argument("--token", help="hub token (default: HF_TOKEN or the stored login)")
    dep.add_argument(
        "--api-key-from-env",
        metavar="VAR",
        help=f"set the Space secret {API_KEY_SECRET} (the REST API key) from the environment variable VAR",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2"):  # one INFO line per HTTP request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root: Path = args.root.resolve()
    readme = root / "README.md"
    try:
        config = default_config(root)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.command == "render":
        sys.stdout.write(render_front_matter(config))
        return 0
    if args.command == "check":
        diff = front_matter_diff(readme, config)
        if diff:
            sys.stdout.write(diff)
            print(f"{readme}: front matter differs; run `python -m spaces_config write`", file=sys.stderr)
            return 1
        print(f"{readme}: front matter matches the Space config")
        return 0
    if args.command == "write":
        changed = write_readme(readme, config)
        print(f"{readme}: {'front matter rewritten' if changed else 'already up to date'}")
        return 0
    if args.command == "files":
        for path in space_files(root):
            print(path)
        return 0

    # deploy
    from huggingface_hub.errors import HfHubHTTPError

    secrets: dict[str, str] = {}
    if args.api_key_from_env:
        value = os.environ.get(args.api_key_from_env, "")
        if not value:
            print(
                f"error: --api-key-from-env {args.api_key_from_env}: that variable is empty or unset", file=sys.stderr
            )
            return 2
        secrets[API_KEY_SECRET] = value
    try:
        check_readme(readme, config)
    except FrontMatterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        result = deploy(
            args.space,
            root=root,
            config=config,
            token=args.token,
            private=args.private,
            hardware=args.hardware,
            secrets=secrets,
        )
    except (ValueError, OSError, HfHubHTTPError) as exc:  # bad input, no token, or the hub said no
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(result.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
