"""Personal data at rest (hashed or encrypted, bound to its record and field) and on screen (masked)."""

from __future__ import annotations

import pytest

from scoring.personal import PersonalData, mask

SECRET = b"s" * 32
ROW = {
    "application_id": "A-1",
    "first_name": "Maria",
    "phone": "+14155550182",
    "email": "maria.lopez87@gmail.com",
    "national_id": None,
    "text_loan_purpose": "Consolidating two credit cards.",
    "loan_amount": 12000.0,
}


def test_encrypted_fields_read_back_only_in_their_own_record_and_field():
    personal = PersonalData(SECRET, "encrypt")
    stored = personal.protect("A-1", ROW)
    assert all(str(stored[c]).startswith("e:") for c in ("first_name", "phone", "email", "text_loan_purpose"))
    assert stored["national_id"] is None and stored["loan_amount"] == 12000.0  # absent / not personal
    assert personal.protect("A-1", ROW)["phone"] != stored["phone"]  # a fresh nonce each time
    assert personal.reveal("A-1", stored) == ROW
    with pytest.raises(ValueError, match="stored first_name of 'A-2' does not decrypt"):
        personal.reveal("A-2", stored)  # moved to another record
    with pytest.raises(ValueError, match="stored email of 'A-1'"):
        personal.reveal("A-1", {**stored, "email": stored["phone"]})  # moved to another field
    with pytest.raises(ValueError, match="another audit secret"):
        PersonalData(b"t" * 32, "encrypt").reveal("A-1", stored)


def test_hashed_fields_cannot_be_read_back():
    personal = PersonalData(SECRET, "hash")
    stored = personal.protect("A-1", ROW)
    assert stored["phone"].startswith("h:") and personal.reveal("A-1", stored) == stored
    assert mask("phone", stored["phone"]) == "(hashed)"
    with pytest.raises(ValueError, match="'encrypt' or 'hash'"):
        PersonalData(SECRET, "clear")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("first_name", "Maria", "M•••"),
        ("phone", "+1 415 555 0182", "•••82"),
        ("phone", "123", "•••"),
        ("email", "maria.lopez87@gmail.com", "m•••@gmail.com"),
        ("date_of_birth", "1987-03-14", "1987-••-••"),
        ("ip_address", "203.0.113.7", "203.•••"),
        ("ip_address", "2001:db8::1", "2001:•••"),
        ("bank_account_number", "000123456789", "•••89"),
        ("text_loan_purpose", "Consolidating cards.", "Consolidating cards."),
        ("employer", None, "—"),
    ],
)
def test_masking_keeps_enough_to_recognise_not_to_copy(column, value, shown):
    assert mask(column, value) == shown
