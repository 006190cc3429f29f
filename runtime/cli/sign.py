"""``nin-sign``: sign a bundle folder with a private key, or check it against the public key."""

from __future__ import annotations

import click

from ..signing import sign_bundle, verify_bundle
from .common import one_line_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Sign deploy bundles (nin-export --bundle) with OpenSSF model-signing, offline with an elliptic-curve
    key pair in PEM form, and check them. Needs nin-edge[sign]."""


@main.command()
@click.argument("folder", type=click.Path())
@click.option("--key", required=True, type=click.Path(dir_okay=False), help="The private key (PEM, unencrypted).")
@one_line_errors
def sign(folder: str, key: str) -> None:
    """Write FOLDER/model.sig, signing every file of the bundle FOLDER (its manifest included)."""
    signature = sign_bundle(folder, key)
    click.echo(f"signed {folder}: {signature}", err=True)


@main.command()
@click.argument("folder", type=click.Path())
@click.option("--key", required=True, type=click.Path(dir_okay=False), help="The public key (PEM).")
@one_line_errors
def verify(folder: str, key: str) -> None:
    """Exit 0 when the bundle FOLDER is signed with KEY's private key and no file changed since; else exit 1."""
    verify_bundle(folder, key)
    click.echo(f"verified {folder}: every file is as signed", err=True)
