from datetime import datetime
from unittest import mock

import psycopg2
import pytest
from django.db import OperationalError, connection

from accounts.models import User

URL = "/api/v1/auth/register/"
BODY = {"full_name": "Ada Lovelace", "email": "ada@example.com", "password": "analytical-engine-42"}

pytestmark = pytest.mark.django_db


def test_register_creates_account_and_returns_public_fields(api):
    response = api.post(URL, BODY, format="json")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "full_name", "date_joined"}
    assert body["email"] == "ada@example.com"
    assert body["full_name"] == "Ada Lovelace"
    user = User.objects.get(pk=body["id"])
    assert user.check_password(BODY["password"])
    assert user.password.startswith("argon2")


def test_a_registered_account_is_an_ordinary_active_user_who_can_log_in(api):
    body = api.post(URL, BODY, format="json").json()

    user = User.objects.get(pk=body["id"])
    assert (user.is_active, user.is_staff, user.is_superuser) == (True, False, False)
    assert user.last_login is None
    assert datetime.fromisoformat(body["date_joined"]) == user.date_joined
    login = {"email": BODY["email"], "password": BODY["password"]}
    assert api.post("/api/v1/auth/login/", login, format="json").status_code == 200


def test_a_duplicate_registration_leaves_the_first_account_as_it_was(api):
    first = api.post(URL, BODY, format="json").json()

    again = {**BODY, "full_name": "Someone Else", "password": "a-different-passphrase"}
    assert api.post(URL, {**again, "email": "ADA@example.com"}, format="json").status_code == 400

    user = User.objects.get()
    assert (user.pk, user.full_name) == (first["id"], "Ada Lovelace")
    assert user.check_password(BODY["password"])


def test_register_stores_email_lower_cased(api):
    response = api.post(URL, {**BODY, "email": "Ada@Example.COM"}, format="json")

    assert response.status_code == 201
    assert response.json()["email"] == "ada@example.com"


@pytest.mark.parametrize("email", ["ada@example.com", "ADA@EXAMPLE.COM", "Ada@example.com"])
def test_register_rejects_duplicate_email_in_any_case(api, user, email):
    response = api.post(URL, {**BODY, "email": email}, format="json")

    assert response.status_code == 400
    assert response.json() == {"email": ["An account with this email already exists."]}
    assert User.objects.count() == 1


@pytest.mark.parametrize("field", ["full_name", "email", "password"])
def test_register_requires_every_field(api, field):
    body = {key: value for key, value in BODY.items() if key != field}

    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert response.json() == {field: ["This field is required."]}


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com", "a b@example.com"])
def test_register_rejects_bad_email(api, email):
    response = api.post(URL, {**BODY, "email": email}, format="json")

    assert response.status_code == 400
    assert "email" in response.json()


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1!", "too short"),
        ("password123", "too common"),
        ("12345678901234", "entirely numeric"),
        ("ada@example.com", "too similar"),
        ("x" * 129, "no more than 128"),
    ],
)
def test_register_rejects_weak_password(api, password, reason):
    response = api.post(URL, {**BODY, "password": password}, format="json")

    assert response.status_code == 400
    messages = " ".join(response.json()["password"])
    assert reason in messages
    assert not User.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {**BODY, "full_name": ""},
        {**BODY, "full_name": "x" * 151},
        {**BODY, "email": "a" * 250 + "@example.com"},
        {**BODY, "full_name": ["Ada"]},
        {**BODY, "email": 12},
        {**BODY, "password": None},
        {**BODY, "full_name": 42},
        {**BODY, "password": 123456789012345},
        {**BODY, "full_name": True},
    ],
)
def test_register_rejects_wrong_types_and_sizes_with_field_errors(api, body):
    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) <= {"full_name", "email", "password"}


def test_a_number_is_not_a_string(api):
    response = api.post(URL, {**BODY, "full_name": 42}, format="json")

    assert response.status_code == 400
    assert response.json() == {"full_name": ["Not a valid string."]}
    assert not User.objects.exists()


def test_an_email_that_grows_past_254_characters_when_stored_is_a_field_error(api):
    # A domain's ASCII form is longer than its Unicode one: 239 typed, 260 stored.
    label = "a" * 55 + "ü"
    email = "a" * 64 + "@" + ".".join([label] * 3) + ".com"
    assert len(email) == 239

    response = api.post(URL, {**BODY, "email": email}, format="json")

    assert response.status_code == 400
    assert response.json() == {"email": ["Ensure this field has no more than 254 characters."]}
    assert not User.objects.exists()


def test_an_email_that_fills_the_254_characters_once_stored_is_stored_encoded(api):
    # Given an international address whose ASCII form is exactly the column's 254 characters
    label = "a" * 55 + "ü"
    email = "a" * 58 + "@" + ".".join([label] * 3) + ".com"
    stored = "a" * 58 + "@" + ".".join(["xn--" + "a" * 55 + "-8yf"] * 3) + ".com"
    assert len(stored) == 254

    # When it registers
    response = api.post(URL, {**BODY, "email": email}, format="json")

    # Then it is stored in the form mail is sent with, as any shorter one, and both spellings
    # sign in
    assert response.status_code == 201
    assert response.json()["email"] == stored
    for typed in (email, stored):
        login = {"email": typed, "password": BODY["password"]}
        assert api.post("/api/v1/auth/login/", login, format="json").status_code == 200


# Characters a reader cannot see. Django's validator accepts each in a domain, where it would make
# a second account; sending drops all but U+180E, so that account's mail would reach the first's.
INVISIBLE = ["\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u034f", "\ufe0f"]
INVALID_EMAIL = {"email": ["Enter a valid email address."]}


def lookalikes(email: str, chars) -> list[str]:
    """The email with each character appended, and inserted into the local part and the domain."""
    local, domain = email.split("@")
    return [
        variant
        for char in chars
        for variant in (
            email + char,
            f"{local[:2]}{char}{local[2:]}@{domain}",
            f"{local}@exa{char}{domain[3:]}",
        )
    ]


@pytest.mark.parametrize("email", lookalikes("ada@example.com", INVISIBLE))
def test_an_email_with_an_invisible_character_is_a_bad_email_not_a_second_account(api, user, email):
    response = api.post(URL, {**BODY, "email": email}, format="json")

    assert response.status_code == 400
    assert response.json() == INVALID_EMAIL
    assert User.objects.get() == user


@pytest.mark.parametrize(
    "email",
    [
        # Whitespace, or a character no one sees, inside it
        "ada@exa\u2003mple.com",  # em space
        "ada@exa\u3000mple.com",  # ideographic space
        "ada@exa\u2028mple.com",  # line separator
        "ada@exa\u2029mple.com",  # paragraph separator
        "ada@exa\u0085mple.com",  # next line, a control
        "ada@exa\ue000mple.com",  # private use
        "ada@exa\u0378mple.com",  # unassigned
        '"ada\x01"@example.com',  # a control, which a quoted local part may hold
        "a b@example.com",
        # A domain sending would write another way: its mail would reach another mailbox
        "ada@\uff45xample.com",  # fullwidth e
        "ada@\ufb01nance.example",  # the fi ligature, for "finance"
        "ada@ex\u2168.com",  # Roman numeral nine, for "ix"
        "ada@exa\u0301mple.com",  # a + combining acute, for the composed "á"
        "ada@a\u05d0.example",  # Latin then Hebrew in one label: IDNA cannot encode it
        "x1@\u00f6.\u0130\u0131",  # stored as x1@xn--nda.xn--i-fka32l, which no check takes
        "ada@[127.0.0.1]",  # an IP address, not a domain
        "ada@localhost",  # a host name alone: the mail server's own user
        "ada@xn--a.com",  # an ASCII form that decodes to no name
        # A name before the "@" that mail cannot carry
        "\u0131van@example.com",  # dotless i, which would be an account apart from ivan@
        "\u017fam@example.com",  # long s
        "\u0130van@example.com",  # capital I with a dot
        "\u212aate@example.com",  # the Kelvin sign, for K
        "a" * 65 + "@example.com",  # longer than mail allows before the "@"
        # An encoded word (RFC 2047), which the mail library decodes into another name
        "=?utf-8?q?ada?=@example.com",
        "=?iso-8859-1?b?YWRh?=@example.com",
        "=?utf-8?q?ada?=.x@example.com",
        # A quoted name: the same mailbox as the name unquoted
        '"ada"@example.com',
        '"\\a\\d\\a"@example.com',
        '"ada lovelace"@example.com',
    ],
)
def test_an_email_that_does_not_say_where_its_mail_goes_is_a_bad_email(api, email):
    response = api.post(URL, {**BODY, "email": email}, format="json")

    assert response.status_code == 400
    assert response.json() == INVALID_EMAIL
    assert not User.objects.exists()


def test_the_longest_name_mail_allows_before_the_at_is_accepted(api):
    email = "a" * 64 + "@example.com"

    assert api.post(URL, {**BODY, "email": email}, format="json").status_code == 201


@pytest.mark.parametrize(
    ("email", "status"),
    [("ada@straße.example", 400), ("ada@bücher.example", 201), ("ada@ᏣᎳᎩ.example", 400)],
)
def test_through_djangos_smtp_backend_a_domain_it_would_write_another_way_is_refused(
    api, settings, email, status
):
    # It encodes domains with IDNA 2003: "straße" becomes "strasse", another domain
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

    response = api.post(URL, {**BODY, "email": email}, format="json")

    assert response.status_code == status


@pytest.mark.parametrize(
    ("email", "stored"),
    [
        ("ada@bücher.example", "ada@xn--bcher-kva.example"),
        ("ada@BÜCHER.example", "ada@xn--bcher-kva.example"),
        ("ada@xn--bcher-kva.example", "ada@xn--bcher-kva.example"),
        ("ada@İzmir.example", "ada@xn--izmir-7fd.example"),  # lower-cased with a combining dot
        ("ada@例え.テスト", "ada@xn--r8jz45g.xn--zckzah"),
        ("ada@straße.example", "ada@xn--strae-oqa.example"),
        # Cherokee, which IDNA writes upper-case and lower() lower-case: the same domain
        ("ada@ᏣᎳᎩ.example", "ada@xn--f9dt7l.example"),
        ("ada@ꮳꮃꭹ.example", "ada@xn--f9dt7l.example"),
        # an ASCII form is judged by its encoding alone, beside any other ASCII label
        ("ada@xn--ls8h.ab--cd.example", "ada@xn--ls8h.ab--cd.example"),
        # a capital sigma ending a word is "σ" to IDNA, though lower() writes the final "ς"
        ("ADA@ΠΕΙΡΑΙΩΣ-BANK.GR", "ada@xn---bank-c9d1a6ab0en0a1f.gr"),
    ],
)
def test_international_domains_are_stored_in_the_ascii_form_mail_is_sent_with(api, email, stored):
    response = api.post(URL, {**BODY, "email": email}, format="json")

    assert response.status_code == 201
    assert response.json()["email"] == stored


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("e10@例え.jp", "e10@xn--r8jz45g.jp"),
        ("e10@xn--r8jz45g.jp", "e10@例え.jp"),
        ("a@é.com", "A@XN--9CA.COM"),
        ("ada@πειραιωσ-bank.gr", "ADA@ΠΕΙΡΑΙΩΣ-BANK.GR"),
        ("ADA@ΠΕΙΡΑΙΩΣ-BANK.GR", "ada@πειραιωσ-bank.gr"),
    ],
)
def test_both_spellings_of_an_international_domain_are_one_account(api, first, second):
    # Mail to either spelling reaches the same mailbox
    assert api.post(URL, {**BODY, "email": first}, format="json").status_code == 201

    again = api.post(URL, {**BODY, "email": second}, format="json")
    login = api.post(
        "/api/v1/auth/login/", {"email": second, "password": BODY["password"]}, format="json"
    )

    assert again.status_code == 400
    assert again.json() == {"email": ["An account with this email already exists."]}
    assert login.status_code == 200
    assert User.objects.count() == 1


# What an earlier release stored for "ADA@ΠΕΙΡΑΙΩΣ-BANK.GR": str.lower() wrote the final "ς"
STORED_BEFORE = "ada@xn---bank-c9d1a6ab0eno4g.gr"


@pytest.mark.parametrize("typed", [STORED_BEFORE, "ada@πειραιως-bank.gr"])
def test_an_account_stored_from_a_capital_sigma_before_signs_in_as_stored(api, make_user, typed):
    # Its owner meant the "σ" domain, or typed "ς": the row cannot tell, so it is left as stored
    user = make_user(email="root@example.com", password=BODY["password"])
    User.objects.filter(pk=user.pk).update(email=STORED_BEFORE)

    login = api.post(
        "/api/v1/auth/login/", {"email": typed, "password": BODY["password"]}, format="json"
    )

    assert login.status_code == 200


@pytest.mark.parametrize(
    "name",
    [
        "\u200b",  # zero-width space
        "\u200d\u200c",  # zero-width joiner and non-joiner, nothing to join
        "\u0301\u0308",  # combining marks on nothing
        "\u2800",  # braille blank
        "\u3164",  # Hangul filler
        "\ufe0f",  # a variation selector alone
    ],
)
def test_a_name_with_nothing_visible_is_refused(api, name):
    response = api.post(URL, {**BODY, "full_name": name}, format="json")

    assert response.status_code == 400
    assert response.json() == {"full_name": ["Enter a name with at least one visible character."]}
    assert not User.objects.exists()


@pytest.mark.parametrize(
    "name",
    [
        "Ada\x07Lovelace",  # a control character
        "Ada\nLovelace",
        "Ada\u2028Lovelace",  # line separator
        "\u202eecalevoL adA",  # right-to-left override: shows reversed in the admin
        "Ada \u2066Lovelace\u2069",  # a directional isolate
    ],
)
def test_a_name_with_control_or_direction_characters_is_refused(api, name):
    response = api.post(URL, {**BODY, "full_name": name}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "full_name": ["A name cannot hold control or text-direction characters."]
    }


@pytest.mark.parametrize(
    "name",
    [
        "Zoë Ångström",
        "محمد\u200cرضا",  # Persian: the zero-width non-joiner belongs in the name
        "\u0915\u094d\u200d\u0937",  # Devanagari with a zero-width joiner
        "李小龍",
        "O'Brien-Smith Jr.",
        "\U0001f469\u200d\U0001f4bb Ada",  # an emoji sequence
        "\U0001f98a",  # an emoji alone: a symbol is something to see
    ],
)
def test_names_in_any_script_are_kept_as_typed(api, name):
    response = api.post(URL, {**BODY, "full_name": name}, format="json")

    assert response.status_code == 201
    assert response.json()["full_name"] == name


def insert_then_lose_the_answer(applied: bool):
    """The registration's INSERT fails with the connection: after PostgreSQL applied it (its
    answer was lost), or before it reached PostgreSQL."""
    manager = type(User.objects)
    real_insert = manager.insert_unless_taken

    def insert(self, user):
        if applied:
            real_insert(self, user)
        raise OperationalError("server closed the connection unexpectedly")

    return mock.patch.object(manager, "insert_unless_taken", insert)


@pytest.mark.django_db(transaction=True)
def test_a_registration_whose_answer_is_lost_is_a_201_as_it_happened(api, caplog):
    with insert_then_lose_the_answer(applied=True):
        response = api.post(URL, BODY, format="json")

    # The account exists, so the client hears that, not a 503 whose retry says "taken"
    assert response.status_code == 201
    user = User.objects.get(email=BODY["email"])
    assert response.json()["id"] == user.pk
    assert "created although its insert failed to answer" in caplog.text
    login = {"email": BODY["email"], "password": BODY["password"]}
    assert api.post("/api/v1/auth/login/", login, format="json").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_registration_committed_just_before_the_server_ended_the_session_is_a_201(api):
    manager = type(User.objects)
    real_insert = manager.insert_unless_taken

    def insert_then_shutdown(self, user):
        real_insert(self, user)
        # The server's administrator shutdown reaches the connection before its answer does.
        pid = connection.connection.info.backend_pid
        admin = psycopg2.connect(**connection.get_connection_params())
        try:
            admin.cursor().execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
        finally:
            admin.close()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # psycopg2.errors.AdminShutdown, SQLSTATE 57P01

    with mock.patch.object(manager, "insert_unless_taken", insert_then_shutdown):
        response = api.post(URL, BODY, format="json")

    assert response.status_code == 201
    assert response.json()["id"] == User.objects.get(email=BODY["email"]).pk


@pytest.mark.django_db(transaction=True)
def test_a_registration_that_never_reached_the_database_is_a_503(api):
    with insert_then_lose_the_answer(applied=False):
        response = api.post(URL, BODY, format="json")

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert not User.objects.filter(email=BODY["email"]).exists()
