"""Identifiers as the identity map keys them: the lookup type and value for any identifier a user holds.

Emails are normalised by `email_key` (docs/input_contract.md), phones put in E.164 (phonenumbers);
both are then SHA-256 hashed, because marts.identity_map never holds them in clear.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass

import phonenumbers

from orchestration.lib import reason_codes

PLAIN_TYPES = ("person_id", "anonymous_id", "user_id", "customer_id")
HASHED_TYPES = ("email_sha256", "phone_sha256")
LOOKUP_TYPES = PLAIN_TYPES + ("email", "phone") + HASHED_TYPES


class IdentifierError(ValueError):
    """An identifier that cannot be looked up; the message says why."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


DISPLAY_NAME = re.compile(r"[^<>]*<([^<>]+)>")


@dataclass(frozen=True)
class EmailCheck:
    key: str | None  # the normalised address, or None when it is unusable
    issue: str | None  # reason_codes.INVALID_EMAIL or reason_codes.MIXED_SCRIPT_EMAIL
    reason: str | None


def check_email(value: str) -> EmailCheck:
    """One address as the identity graph keys it: Unicode NFKC (full-width letters fold to ASCII),
    a display name (`Ann <ann@example.com>`) dropped, the syntax checked by email-validator (no DNS
    lookups), the domain as IDNA ASCII (`bücher.de` -> `xn--bcher-kva.de`), all lower-cased.
    A plus tag is kept: `ann+news@` and `ann@` stay two addresses, since providers differ on it.
    A local part or domain mixing scripts (a Cyrillic `і` among Latin letters) is refused: such an
    address is a look-alike far more often than a real one."""
    from confusable_homoglyphs import confusables
    from email_validator import EmailNotValidError, validate_email

    text = unicodedata.normalize("NFKC", value).strip()
    if named := DISPLAY_NAME.fullmatch(text):  # email-validator refuses unquoted non-ASCII names (Müller)
        text = named.group(1).strip()
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        return EmailCheck(None, reason_codes.INVALID_EMAIL, f"not an email address: {exc}")
    local, domain = checked.local_part, checked.ascii_domain
    if not text.isascii() and (confusables.is_mixed_script(local) or confusables.is_mixed_script(checked.domain)):
        return EmailCheck(
            None,
            reason_codes.MIXED_SCRIPT_EMAIL,
            "the address mixes scripts (for example a Cyrillic letter among Latin ones), as look-alike addresses do",
        )
    return EmailCheck(f"{local}@{domain}".lower(), None, None)


def normalise_email(value: str) -> str:
    """The key of an address (check_email); text that is not one is only trimmed and lower-cased."""
    return check_email(value).key or value.strip().lower()


def normalise_phone(value: str, region: str | None = None) -> str | None:
    """E.164, or None when the text is not a phone number (national numbers need a region)."""
    try:
        parsed = phonenumbers.parse(value.strip(), region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    # Only a whole number: IS_POSSIBLE_LOCAL_ONLY ("555-0100" in the US) lacks its area code.
    if phonenumbers.is_possible_number_with_reason(parsed) != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def person_of(con, identifier_type: str, identifier: str) -> str | None:
    """The person marts.identity_map gives a lookup key from lookup_key() (a person_id gives itself)."""
    if identifier_type == "person_id":
        row = con.execute(
            "SELECT any_value(person_id) FROM marts.identity_map WHERE person_id = ?", [identifier]
        ).fetchone()
    else:
        row = con.execute(
            "SELECT any_value(person_id) FROM marts.identity_map WHERE identifier_type = ? AND identifier = ?",
            [identifier_type, identifier],
        ).fetchone()
    return row[0] if row else None


def lookup_key(identifier_type: str, value: str, region: str | None = None) -> tuple[str, str]:
    """(identifier_type, identifier) as stored in marts.identity_map (person_id passes through)."""
    kind = identifier_type.strip().lower()
    if kind not in LOOKUP_TYPES:
        raise IdentifierError(f"unknown identifier type '{identifier_type}'; use one of {', '.join(LOOKUP_TYPES)}")
    value = value.strip()
    if not value:
        raise IdentifierError("the identifier is empty")
    if kind == "email":
        return "email_sha256", sha256_hex(normalise_email(value))
    if kind == "phone":
        e164 = normalise_phone(value, region)
        if e164 is None:
            raise IdentifierError(
                f"'{value}' is not a phone number in international form (+44...); national numbers need a region"
            )
        return "phone_sha256", sha256_hex(e164)
    if kind in HASHED_TYPES:
        return kind, value.lower()
    return kind, value


# Shorter forms are left to the exact, column-by-column match: as text they would hit other people.
MIN_WRITTEN_FORM = 5


def written_forms(kind: str, value: str) -> set[str]:
    """The ways an identifier can be written inside free text (a quarantined line, a URL, JSON):
    as sent, trimmed and lower-cased, URL-encoded and JSON-escaped; an email also as its SHA-256 and
    MD5 hex; a phone (E.164) also in international, national, RFC 3966 and digits-only form."""
    text = value.strip()
    if not text:
        return set()
    base = {value, text, text.lower()}
    if kind in ("email", "email_normalised"):
        key = normalise_email(text) if "@" in text else text.lower()
        base |= {key, sha256_hex(key), hashlib.md5(key.encode("utf-8")).hexdigest()}
    if kind in ("phone", "phone_e164"):
        try:
            number = phonenumbers.parse(text, None if text.startswith("+") else "US")
        except phonenumbers.NumberParseException:
            number = None
        if number is not None:
            fmt = phonenumbers.PhoneNumberFormat
            national = phonenumbers.format_number(number, fmt.NATIONAL)
            base |= {phonenumbers.format_number(number, f) for f in (fmt.E164, fmt.INTERNATIONAL, fmt.RFC3966)}
            base |= {national, re.sub(r"\D", "", national), str(number.country_code) + str(number.national_number)}
    forms = set()
    for b in base:
        forms |= {
            b,
            urllib.parse.quote(b, safe=""),
            urllib.parse.quote_plus(b),
            urllib.parse.quote(b, safe="@+"),
            json.dumps(b)[1:-1],
            json.dumps(b, ensure_ascii=False)[1:-1],
            b.replace("@", "\\u0040"),
            html.escape(b),
        }
    return {f for f in forms if len(f) >= MIN_WRITTEN_FORM}
