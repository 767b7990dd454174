"""SMS channel adapter: one decoded channel message in, one ``Outcome`` out, over Amazon SNS ``Publish``.

Contract: ``await SmsAdapter(...).send(message)`` never raises for provider, transport or credential
trouble; it returns ``classify_error(...)`` of the SNS error, or ``classify_exception(...)`` of a
botocore failure. Pure helpers (``classify_error``, ``classify_exception``, ``publish_args``) hold all
the decisions, so they are unit-tested without a network.

Why it looks like this (botocore 1.44, SNS facts in the shared provider notes, section 5):

- boto3 is synchronous. ``publish`` runs on a bounded thread pool of our own, and the client's
  connection pool is sized to that pool, so a burst never opens more sockets than it can use.
- botocore retries throttling and 5xx answers by itself, in every retry mode. Those retries would
  hide attempts from the worker framework, which owns backoff and the retry topics, so we make
  exactly one attempt per send (``total_max_attempts=1``).
- Connect and read timeouts are bounded, so a send is bounded too. A read timeout is ambiguous: SNS may
  already have accepted the SMS, and publishing to a phone number has no idempotency key. The
  outcome is still a retry, and its ``detail`` says that a duplicate is possible.
- SNS counts messages per second per account. The worker's token bucket paces SMS at
  ``sms_max_per_second`` before it calls ``send`` (``consumers.delivery.worker.send_rate``).
- Error text can contain the phone number (personal data), so digit runs are redacted from ``detail``.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, cast

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from consumers.delivery.outcome import Outcome
from notify_core.settings import Settings
from notify_core.tracing import http_call, http_response

SmsType = Literal["Transactional", "Promotional"]

SMS_TYPE_ATTRIBUTE = "AWS.SNS.SMS.SMSType"
SENDER_ID_ATTRIBUTE = "AWS.SNS.SMS.SenderID"
PROMOTIONAL_CATEGORIES = frozenset({"marketing"})

# Codes from the botocore SNS model plus the generic AWS Query ones botocore's own retry checker
# treats as throttling or transient.
_RETRY_CODES = frozenset(
    {
        "Throttling",  # generic AWS Query throttle (400)
        "ThrottlingException",
        "Throttled",  # SNS ThrottledException (429)
        "ThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "KMSThrottling",
        "InternalError",  # SNS InternalErrorException (500)
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "RequestExpired",  # signed too long before it arrived; the next attempt signs afresh
    }
)
# The number itself is dead to us. An opt-out is the user's decision, so we do not retry it.
_DEACTIVATE_CODES = frozenset({"OptedOut"})
# Invalid parameter: it is the number's fault only when the text names the phone number.
_INVALID_PARAMETER_CODES = frozenset({"InvalidParameter", "ParameterValueInvalid", "InvalidParameterValue"})
_PHONE_NUMBER = re.compile(r"phone\s*number", re.IGNORECASE)
# Credentials, signing, IAM or KMS configuration: retrying the same request cannot help, and
# the number is fine.
_CONFIG_CODES = frozenset(
    {
        "AuthorizationError",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidSecurity",
        "ExpiredToken",
        "OptInRequired",
        "KMSDisabled",
        "KMSInvalidState",
        "KMSNotFound",
        "KMSOptInRequired",
        "KMSAccessDenied",
    }
)
_DIGIT_RUN = re.compile(r"[+(]?\d[\d\s().-]{4,}\d")


def classify_error(code: str, http_status: int, message: str = "") -> Outcome:
    """An SNS error answer (``ClientError``: Error.Code, HTTP status, Error.Message) as an ``Outcome``."""
    detail = f"SNS {http_status} {code}" + (f": {redact(message)}" if message else "")
    if code in _DEACTIVATE_CODES:
        return Outcome.permanent(code, deactivate_target=True, detail=detail)
    if code in _INVALID_PARAMETER_CODES:
        return Outcome.permanent(code, deactivate_target=bool(_PHONE_NUMBER.search(message)), detail=detail)
    if code in _RETRY_CODES or http_status == 429 or http_status >= 500:
        return Outcome.retry(code, detail=detail)
    if code in _CONFIG_CODES or 400 <= http_status < 500:
        return Outcome.permanent(code, detail=detail)
    return Outcome.retry(code or str(http_status), detail=detail)


def classify_exception(exc: BaseException) -> Outcome:
    """A botocore failure as an ``Outcome``: SNS answers via ``classify_error``; transport failures retry."""
    if isinstance(exc, ClientError):
        response = cast(Mapping[str, Any], exc.response)
        error = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
        return classify_error(str(error.get("Code") or ""), int(status), str(error.get("Message") or ""))
    # Subclasses first: ReadTimeoutError is an HTTPClientError, ConnectTimeoutError a ConnectionError.
    if isinstance(exc, ReadTimeoutError):
        return Outcome.retry("timeout", detail="read timeout: SNS may have sent it, a retry may duplicate")
    if isinstance(exc, ConnectTimeoutError):
        return Outcome.retry("timeout", detail="connect timeout: nothing was sent")
    # Refused, DNS, TLS or proxy (nothing was sent), or dropped mid-request (it may have been sent).
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return Outcome.retry("connection_error", detail=type(exc).__name__)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return Outcome.permanent("config_error", detail=type(exc).__name__)
    if isinstance(exc, ParamValidationError):  # botocore refused the request before sending it
        return Outcome.permanent("invalid_request", detail=type(exc).__name__)
    return Outcome.retry("client_error", detail=type(exc).__name__)


def redact(text: str) -> str:
    """``text`` without digit runs long enough to be a phone number (error texts may echo it)."""
    return _DIGIT_RUN.sub("<redacted>", text)


def sms_type_for(category: str | None, default: SmsType = "Transactional") -> SmsType:
    """Promotional for marketing (cheaper routes), the configured default for everything else."""
    if category is not None and category.casefold() in PROMOTIONAL_CATEGORIES:
        return "Promotional"
    return default


def publish_args(
    message: Mapping[str, Any], *, sender_id: str | None, default_sms_type: SmsType = "Transactional"
) -> dict[str, Any]:
    """Keyword arguments of ``sns.publish`` for one channel message (target = E.164 number, sms_text).

    Raises ``ValueError`` when the message has no text or no number, with no personal data in the text.
    """
    phone = message.get("target")
    text = message.get("sms_text")
    if not isinstance(phone, str) or not phone:
        raise ValueError("SMS message without a target phone number")
    if not isinstance(text, str) or not text:
        raise ValueError("SMS message without sms_text")
    attributes: dict[str, dict[str, str]] = {
        SMS_TYPE_ATTRIBUTE: {
            "DataType": "String",
            "StringValue": sms_type_for(message.get("category"), default_sms_type),
        }
    }
    if sender_id:  # carriers in some countries (US, CA) ignore it; harmless there
        attributes[SENDER_ID_ATTRIBUTE] = {"DataType": "String", "StringValue": sender_id}
    return {"PhoneNumber": phone, "Message": text, "MessageAttributes": attributes}


def is_expired(message: Mapping[str, Any], now: dt.datetime | None = None) -> bool:
    """True when ``expires_at`` (a datetime, or epoch milliseconds) has passed."""
    expires_at = message.get("expires_at")
    if expires_at is None:
        return False
    current = now or dt.datetime.now(dt.UTC)
    if isinstance(expires_at, dt.datetime):
        if expires_at.tzinfo is None:  # fastavro gives aware datetimes; a naive one is meant as UTC
            expires_at = expires_at.replace(tzinfo=dt.UTC)
        return expires_at <= current
    return float(expires_at) / 1000 <= current.timestamp()


class SmsAdapter:
    """Sends SMS through one SNS endpoint (``endpoint_url=None`` means real AWS in ``region``)."""

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        sender_id: str | None = None,
        sms_type: SmsType = "Transactional",
        max_workers: int = 8,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self._sender_id, self._sms_type = sender_id, sms_type
        config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"total_max_attempts": 1, "mode": "standard"},  # one attempt: the framework retries
            max_pool_connections=max_workers,  # one socket per publishing thread
            tcp_keepalive=True,
        )
        # A session per adapter: boto3's default session is shared global state.
        session = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        self._client: Any = session.client("sns", endpoint_url=endpoint_url, config=config)
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sms-publish")
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> SmsAdapter:
        """``kwargs``: max_workers, connect_timeout_s, read_timeout_s (not settings yet)."""
        return cls(
            endpoint_url=settings.sns_endpoint,
            region=settings.aws_region,
            access_key_id=settings.aws_access_key_id.get_secret_value(),
            secret_access_key=settings.aws_secret_access_key.get_secret_value(),
            sender_id=settings.sms_sender_id or None,
            sms_type=settings.sms_type,
            **kwargs,
        )

    async def send(self, message: Mapping[str, Any]) -> Outcome:
        """Deliver one channel message (delivery_id, target, sms_text, category, expires_at)."""
        if self._closed:
            raise RuntimeError("SmsAdapter is closed")
        if is_expired(message):
            return Outcome.permanent("expired", detail="expires_at passed before the send")
        try:
            args = publish_args(message, sender_id=self._sender_id, default_sms_type=self._sms_type)
        except ValueError as exc:
            return Outcome.permanent("invalid_message", detail=str(exc))
        loop = asyncio.get_running_loop()
        try:
            with http_call("POST sns", str(self._client.meta.endpoint_url), "/") as call:
                # A cancelled send cannot stop the thread: the SMS may still go out. In this delivery's
                # context, so botocore's log lines carry its ids and trace.
                publish = functools.partial(contextvars.copy_context().run, self._client.publish, **args)
                response = await loop.run_in_executor(self._executor, publish)
                http_response(
                    call,
                    (cast(Mapping[str, Any], response).get("ResponseMetadata") or {}).get("HTTPStatusCode"),
                )
        except (ClientError, BotoCoreError) as exc:
            return classify_exception(exc)
        message_id = cast(Mapping[str, Any], response).get("MessageId")
        return Outcome.sent(str(message_id) if message_id is not None else None)

    async def close(self) -> None:
        """Wait for publishes in flight, then release the threads and the connection pool."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._client.close()
