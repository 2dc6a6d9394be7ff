"""The cactus-client admin plugin for csipstream (entry point group ``cactus_client.admin``).

cactus-client calls ``admin_setup`` once per procedure, ``admin_instruction`` before the first
attempt of every step that carries admin instructions, and ``admin_teardown`` at the end. Each
instruction maps onto csipstream's admin API (``CSIPSTREAM_ADMIN_URL``,
``CSIPSTREAM_ADMIN_TOKEN``); nothing is simulated. When csipstream cannot do what an
instruction asks, the instruction fails with the precise reason.

How a failure is reported: cactus-client 1.3 ignores an ``ActionResult.failed`` from
``admin_instruction`` (it honours only skips and exceptions), so a step that waits for the
missing state with ``repeat_until_pass`` would wait forever. By default
(``CSIPSTREAM_CACTUS_ON_FAILURE=raise``) the plugin therefore raises ``AdminInstructionFailed``
with the reason, which cactus-client records as the step's exception and which ends the
procedure; ``=return`` returns ``ActionResult.failed(reason)`` instead. Either way the reason
is logged and, when ``CSIPSTREAM_CACTUS_FAILURES`` names a file, appended to it as a JSON line
for the conformance runner.
"""

from __future__ import annotations

import json
import logging
import os
from urllib.parse import urlsplit

from cactus_client.admin.plugins import hookimpl
from cactus_client.model.context import AdminContext
from cactus_client.model.execution import ActionResult, StepExecution
from cactus_test_definitions.server.admin_instructions import AdminInstructionType as Type
from cactus_test_definitions.server.test_procedures import AdminInstruction

from csipstream_cactus import controls, programs, rates, registration
from csipstream_cactus.admin_api import AdminApi, AdminApiError
from csipstream_cactus.clients import CsipClient, resolve
from csipstream_cactus.registration import InstructionFailed

logger = logging.getLogger("csipstream_cactus")

ON_FAILURE_ENV = "CSIPSTREAM_CACTUS_ON_FAILURE"
FAILURES_ENV = "CSIPSTREAM_CACTUS_FAILURES"


class AdminInstructionFailed(Exception):
    """An admin instruction csipstream could not carry out (the message says why)."""


def notification_host(context: AdminContext) -> str | None:
    """host:port of the notification sink, for the aggregators' allowed hosts."""
    uri = context.server_config.notification_uri
    if not uri:
        return None
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


class CsipstreamAdminPlugin:
    def __init__(self) -> None:
        self.api: AdminApi | None = None

    @hookimpl
    async def admin_setup(self, context: AdminContext) -> ActionResult:
        try:
            self.api = AdminApi.from_environment()
            await self.api.get("/stats")
            # Onboarding: every aggregator client is an aggregator at csipstream, allowed to be
            # notified at the sink (a device client cannot hold subscriptions' notifications).
            for config in context.client_configs.values():
                client = resolve(config)
                if client.aggregator is not None:
                    await registration.ensure_aggregator(
                        self.api, client, notification_host(context)
                    )
        except (LookupError, AdminApiError, OSError) as exc:
            reason = f"csipstream admin setup failed: {exc}"
            self._record(context, "admin_setup", "setup", reason)
            return ActionResult.failed(reason)
        return ActionResult.done()

    @hookimpl
    async def admin_teardown(self, context: AdminContext) -> ActionResult:
        if self.api is not None:
            await self.api.close()
        return ActionResult.done()

    @hookimpl
    async def admin_instruction(
        self, instruction: AdminInstruction, step: StepExecution, context: AdminContext
    ) -> ActionResult | None:
        if self.api is None:
            return ActionResult.failed("admin_setup did not run")
        client = resolve(context.client_config_for(instruction.client))
        try:
            await self._carry_out(self.api, instruction, client, context)
        except (InstructionFailed, AdminApiError) as exc:
            reason = f"{instruction.type.value} for {client.alias}: {exc}"
            logger.error("admin instruction failed: %s", reason)
            self._record(context, step.source.id, instruction.type.value, reason)
            if os.environ.get(ON_FAILURE_ENV, "raise") == "raise":
                raise AdminInstructionFailed(reason) from exc
            return ActionResult.failed(reason)
        return ActionResult.done()

    async def _carry_out(
        self, api: AdminApi, instruction: AdminInstruction, client: CsipClient, ctx: AdminContext
    ) -> None:
        params = instruction.parameters
        match instruction.type:
            case Type.ENSURE_END_DEVICE:
                await registration.ensure_end_device(api, client, params)
            case Type.SET_CLIENT_ACCESS:
                await registration.set_client_access(api, client, params, notification_host(ctx))
            case Type.ENSURE_MUP_LIST_EMPTY:
                await registration.ensure_mup_list_empty(api, client)
            case Type.ENSURE_FSA:
                await programs.ensure_fsa(api, client, params.get("annotation"))
            case Type.ENSURE_DER_PROGRAM:
                await programs.ensure_program(
                    api, client, params.get("fsa_annotation"), params.get("primacy")
                )
            case Type.ENSURE_DER_CONTROL_LIST:
                await programs.ensure_control_list(api, client, params)
            case Type.CREATE_DER_CONTROL:
                await controls.create_der_control(api, client, params)
            case Type.CREATE_DEFAULT_DER_CONTROL:
                await controls.create_default_der_control(api, client, params)
            case Type.CLEAR_DER_CONTROLS:
                await controls.clear_der_controls(api, client, params)
            case Type.SET_POLL_RATE:
                await rates.set_poll_rate(api, params)
            case Type.SET_POST_RATE:
                await rates.set_post_rate(api, params)
            case _:
                raise InstructionFailed(f"no mapping for admin instruction {instruction.type}")

    @staticmethod
    def _record(context: AdminContext, step: str, instruction: str, reason: str) -> None:
        path = os.environ.get(FAILURES_ENV)
        if not path:
            return
        line = {
            "procedure": str(context.test_procedure_id),
            "step": step,
            "instruction": instruction,
            "reason": reason,
        }
        with open(path, "a", encoding="utf-8") as sink:
            sink.write(json.dumps(line) + "\n")
