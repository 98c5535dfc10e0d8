"""Every command modbot answers, assembled from one module per section.

Each handler goes through the same executor as the pipeline, so what a moderator does is
audited like what the bot does. `help` lists the commands in the order registered here.
"""

from __future__ import annotations

from .accounts import register_account_commands
from .actions import register_action_commands
from .evidence import register_evidence_commands
from .framework import CommandSet
from .info import register_info_commands
from .lists import register_list_commands
from .media import register_media_commands
from .members import register_member_commands
from .policy import register_policy_commands
from .policylists import register_policylist_commands
from .review import register_review_commands
from .rooms import register_room_commands
from .userreports import register_report_commands

SECTIONS = (
    register_info_commands,
    register_room_commands,
    register_media_commands,
    register_list_commands,
    register_member_commands,
    register_policy_commands,
    register_policylist_commands,
    register_evidence_commands,
    register_review_commands,
    register_action_commands,
    register_account_commands,
    register_report_commands,
)


def build_commands() -> CommandSet:
    commands = CommandSet()
    for register in SECTIONS:
        register(commands)
    return commands
