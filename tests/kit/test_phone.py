"""What the hub takes as a mainland mobile number, and what it refuses."""

from __future__ import annotations

import pytest

from tongcha.kit.phone import InvalidNumber, parse_mobile


@pytest.mark.parametrize(
    "raw",
    [
        "+8613800138000",
        "13800138000",
        13800138000,
        "+86 138 0013 8000",
        "138-0013-8000",
        "(138) 0013 8000",
        "138.0013.8000",
        "0086 13800138000",
        " 13800138000 ",
        "１３８００１３８０００",  # full-width, as a Chinese input method types them
        "＋８６\u3000１３８\u3000００１３\u3000８０００",
    ],
)
def test_digits_with_the_usual_separators_are_a_number(raw: object) -> None:
    assert parse_mobile(raw) == 13800138000


@pytest.mark.parametrize(
    "raw",
    [
        "abc13800138000",
        "tel:+8613800138000",
        "+86 138 CALL 8000",
        "1-800-FLOWERS",
        "+86 138 0013 8000 ext. 12",
        "+8613800138000;ext=1",
        "+86\t13800138000",
        "13800138000\n",
        "",
    ],
    ids=[
        "letters-before",
        "tel-uri",
        "vanity-letters",
        "vanity-word",
        "extension",
        "extension-param",
        "tab",
        "newline",
        "empty",
    ],
)
def test_anything_but_digits_spaces_and_plus_minus_brackets_dot_is_not_a_number(raw: str) -> None:
    # phonenumbers alone read a number out of all of these.
    with pytest.raises(InvalidNumber) as caught:
        parse_mobile(raw)
    assert caught.value.message.startswith("number is not a phone number")
    assert caught.value.code == "INVALID_ARGUMENT"


def test_an_id_number_in_the_number_field_is_refused_without_being_repeated() -> None:
    id_number = "11010519850312123X"
    with pytest.raises(InvalidNumber) as caught:
        parse_mobile(id_number)
    assert id_number not in caught.value.message and "123X" not in caught.value.message


def test_the_mobile_prefix_table_says_of_each_prefix_what_phonenumbers_says_of_its_numbers() -> None:
    import phonenumbers

    from tongcha.kit.phone import mobile_prefix_table

    table = mobile_prefix_table()
    assert not table[:100_000].any()
    for prefix in range(100_000, 200_000, 7):  # a seventh of them, every kind of prefix among them
        for rest in ("00000", "48213", "99999"):
            parsed = phonenumbers.parse(f"+86{prefix}{rest}")
            mobile = phonenumbers.is_valid_number(parsed) and phonenumbers.number_type(parsed) in (
                phonenumbers.PhoneNumberType.MOBILE,
                phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
            )
            assert table[prefix] == mobile, (prefix, rest)
