"""proxy.scrub.propkeys: property keys that name people, contact data, ids or secrets, in four languages."""

from __future__ import annotations

import pytest

from proxy.scrub.propkeys import DEFAULT_PROP_KEY_DENYLIST, KeyRules, normalise_key

RULES = KeyRules([("prop_key_denylist", e) for e in DEFAULT_PROP_KEY_DENYLIST])


@pytest.mark.parametrize(
    "key",
    [
        # English
        "name", "Name", "first_name", "lastName", "customer name", "full-name", "username", "nickname",
        "mobile", "mobile_number", "cell", "cellPhone", "street", "street_address", "zip", "zip_code",
        "postcode", "login", "login_id", "handle", "twitter_handle", "national_id", "tax_id", "taxNumber",
        "date_of_birth", "passport_no", "email", "user_tel", "ip_address", "clientIP", "session_id",
        # German
        "Vorname", "Nachname", "Telefon", "Handynummer", "Straße", "Hausnummer", "PLZ", "Postleitzahl",
        "Anschrift", "Geburtsdatum", "Steuer-ID", "Steuernummer", "Personalausweis", "Passwort",
        # French
        "nom", "prénom", "téléphone", "portable", "adresse", "rue", "code_postal", "mot_de_passe",
        "date_de_naissance", "numéro_sécurité_sociale", "identifiant",
        # Spanish
        "nombre", "apellidos", "teléfono", "móvil", "celular", "dirección", "calle", "código_postal",
        "contraseña", "usuario", "fecha_de_nacimiento", "DNI", "NIE", "nif",
    ],
)  # fmt: skip
def test_sensitive_keys_are_denied(key: str) -> None:
    assert RULES.denies(key), key


@pytest.mark.parametrize(
    "key",
    [
        "plan", "title", "hotel_stars", "detail", "author", "className", "description", "is_mobile",
        "template", "product_name", "page_name", "event_name", "user_type", "customer_tier", "cell_index",
        "table_cell", "zipper", "event_handler", "display_mode", "mobile_menu_open", "nombre_producto",
        "login_method", "theme",
    ],
)  # fmt: skip
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not RULES.denies(key), key


def test_normalisation_folds_case_accents_and_separators() -> None:
    assert normalise_key("Prénom") == "prenom"
    assert normalise_key("Straße") == "strasse"
    assert normalise_key("first_name.x y") == "firstnamexy"


def test_whole_key_entries_and_empty_entries() -> None:
    rules = KeyRules([("x", "=pin"), ("x", "loyalty")])
    assert rules.denies("PIN") and not rules.denies("spin") and not rules.denies("pin_code")
    assert rules.denies("my_loyalty_no")
    with pytest.raises(ValueError, match="x: empty stem '='"):
        KeyRules([("x", "=")])
