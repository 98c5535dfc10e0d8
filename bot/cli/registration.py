"""`modbot generate-registration`: write the appservice registration with fresh tokens and put them in the config.

Writes an example config first when there is none, and the incident chain key when it is missing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ..config import default_config_text
from ..filemodes import write_private
from ..intake.antispam import module_block
from ..intake.registration import new_token, set_presend_secret, set_tokens, write_registration
from ..record.evidence import create_chain_key
from .common import load


def cmd_generate_registration(args: argparse.Namespace) -> int:
    path = Path(args.config)
    if not path.exists():
        write_private(path, default_config_text())
        print(f"wrote an example config to {path}; edit homeserver.url and homeserver.domain")
    text = set_presend_secret(set_tokens(path.read_text(), new_token(), new_token()), new_token())
    write_private(path, text)  # it now holds the tokens: 0600, however it was before
    config = load(str(path))
    out = Path(args.registration)
    write_registration(config, out)
    print(f"wrote {out} with fresh tokens and updated {path}")
    key_file = config.incidents.chain_key_file
    if not key_file.exists():
        create_chain_key(key_file)
        print(f"wrote the incident chain key {key_file} (mode 0600); back it up with the database")
    # The pre-send check (bot/presend.py): Synapse loads synapse-http-antispam with this block.
    block = yaml.safe_dump({"modules": [module_block(config)]}, sort_keys=False)
    print("For pre-send checks (presend.enabled in the config; `pip install synapse-http-antispam` where Synapse")
    print("runs), add this to homeserver.yaml (it holds the secret: keep the file private):")
    print(block.rstrip())
    print("Next: add the registration to app_service_config_files in homeserver.yaml, restart Synapse,")
    print(f"then run `modbot check -c {path}`.")
    return 0
