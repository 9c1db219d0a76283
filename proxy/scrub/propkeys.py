"""Sensitive property keys: keys that name a person, their contact data, an identity number or a secret.

A key is normalised (case-folded, accents removed, ``-``, ``_``, ``.`` and whitespace removed, so
``Prénom``, ``first_name`` and ``Straße`` become ``prenom``, ``firstname`` and ``strasse``) and matched
against the denylist. An entry is one of:

* ``=name``: the whole normalised key (``name``, ``Name``), so that ``product_name`` and ``is_mobile``
  are kept;
* a stem of four characters or fewer (``tel``, ``zip``, ``plz``, ``dni``): a whole word of the key
  (words are split at separators and camelCase boundaries), so ``hotel_stars``, ``title`` and ``zipper``
  are kept while ``user_tel`` and ``zip_code`` are not;
* a longer stem (``email``, ``vorname``, ``telefono``): anywhere in the normalised key.

The default list covers English, German, French and Spanish names of: e-mail, phone, mobile, address
parts, names, user names and handles, logins, dates of birth, identity, tax and social-security numbers,
payment data, credentials and session state, network addresses, precise location and person/device ids.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

DEFAULT_PROP_KEY_DENYLIST: tuple[str, ...] = (
    # contact details
    "email",
    "mail",
    "correo",  # es
    "courriel",  # fr
    "phone",
    "mobilenumber",
    "mobilephone",
    "mobileno",
    "mobilenr",
    "=mobile",
    "=cell",
    "cellphone",
    "cellnumber",
    "msisdn",
    "tel",
    "telefon",  # de (Telefon, Telefonnummer)
    "telefono",  # es (teléfono)
    "handy",  # de
    "mobilnummer",  # de
    "=portable",  # fr
    "=movil",  # es (móvil)
    "celular",  # es
    "fax",
    "address",
    "adresse",  # de, fr
    "anschrift",  # de
    "direccion",  # es (dirección)
    "street",
    "strasse",  # de (Straße)
    "hausnummer",  # de
    "=rue",  # fr
    "=calle",  # es
    "postcode",
    "postalcode",
    "zipcode",
    "zip",
    "plz",  # de
    "postleitzahl",  # de
    "codepostal",  # fr
    "codigopostal",  # es
    # names, user names, handles and logins
    "=name",
    "=nom",  # fr
    "=nombre",  # es
    "firstname",
    "lastname",
    "fullname",
    "surname",
    "givenname",
    "familyname",
    "middlename",
    "maidenname",
    "displayname",
    "realname",
    "nickname",
    "screenname",
    "customername",
    "contactname",
    "billingname",
    "shippingname",
    "cardholder",
    "accountholder",
    "username",
    "vorname",  # de
    "nachname",  # de
    "familienname",  # de
    "kundenname",  # de
    "benutzername",  # de
    "=benutzer",  # de
    "prenom",  # fr (prénom)
    "nomdefamille",  # fr
    "nomcomplet",  # fr
    "=identifiant",  # fr
    "apellido",  # es
    "nombrecompleto",  # es
    "nombredeusuario",  # es
    "=usuario",  # es
    "=user",
    "=customer",
    "=login",
    "loginname",
    "loginid",
    "loginemail",
    "=handle",
    "userhandle",
    "twitterhandle",
    "instagramhandle",
    "socialhandle",
    # credentials and session state
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pwd",
    "passwort",  # de
    "kennwort",  # de
    "motdepasse",  # fr
    "contrasena",  # es (contraseña)
    "secret",
    "token",
    "apikey",
    "auth",
    "authoriz",
    "authoris",
    "oauth",
    "credential",
    "bearer",
    "cookie",
    "session",
    # identity documents, tax and social-security numbers, payment
    "ssn",
    "socialsecurity",
    "nationalid",
    "nationalidentity",
    "nationalinsurance",
    "nino",
    "idnumber",
    "idcard",
    "identitycard",
    "identitynumber",
    "identitydocument",
    "personalid",
    "taxid",
    "taxnumber",
    "taxpayer",
    "tin",
    "driverlicen",
    "driverslicen",
    "drivinglicen",
    "passport",
    "personalausweis",  # de
    "ausweis",  # de
    "steuerid",  # de (Steuer-ID, Steueridentifikationsnummer)
    "steuernummer",  # de
    "sozialversicherung",  # de
    "securitesociale",  # fr (sécurité sociale)
    "numerosecu",  # fr
    "=nir",  # fr
    "numerofiscal",  # fr
    "dni",  # es
    "nie",  # es
    "nif",  # es
    "documentodeidentidad",  # es
    "birth",
    "dob",
    "geburt",  # de (Geburtsdatum, Geburtstag, Geburtsort)
    "naissance",  # fr
    "nacimiento",  # es
    "creditcard",
    "cardnumber",
    "ccnumber",
    "cvv",
    "cvc",
    "iban",
    "bankaccount",
    "kontonummer",  # de
    # network address and precise location
    "ipaddr",
    "ip",
    "latitude",
    "longitude",
    "lat",
    "lng",
    "lon",
    # identifiers of people and devices
    "userid",
    "customerid",
    "clientid",
    "deviceid",
    "visitorid",
    "memberid",
    "accountid",
    "kundennummer",  # de
)

# Stems up to this length only match whole words of a key.
_WORD_STEM_MAX_LEN = 4
_KEY_STRIP_RE = re.compile(r"[-_.\s]")
_KEY_WORD_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+|[^\x00-\x7f]+")


def fold_key(key: str) -> str:
    """Case-folded, without accents: ``Prénom`` -> ``prenom``, ``Straße`` -> ``strasse``."""
    folded = key.casefold()
    if folded.isascii():
        return folded
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalise_key(key: str) -> str:
    return _KEY_STRIP_RE.sub("", fold_key(key))


class KeyRules:
    """Decides whether a property key is sensitive; built once from a denylist (see the module docstring)."""

    __slots__ = ("_substring_re", "_whole_keys", "_word_stems")

    def __init__(self, entries: Sequence[tuple[str, str]]) -> None:
        """``entries``: ``(origin, entry)`` pairs; ``origin`` names the setting in error messages."""
        whole: set[str] = set()
        words: set[str] = set()
        substrings: list[str] = []
        for origin, entry in entries:
            exact = entry.startswith("=")
            normalised = normalise_key(entry[1:] if exact else entry)
            if not normalised:
                raise ValueError(f"{origin}: empty stem {entry!r}")
            if exact:
                whole.add(normalised)
            elif len(normalised) <= _WORD_STEM_MAX_LEN:
                words.add(normalised)
            elif normalised not in substrings:
                substrings.append(normalised)
        self._whole_keys = frozenset(whole)
        self._word_stems = frozenset(words)
        # One alternation instead of a loop over the stems: a key is denied when any stem occurs in it.
        self._substring_re = re.compile("|".join(re.escape(s) for s in substrings)) if substrings else None

    def denies(self, key: str) -> bool:
        normalised = normalise_key(key)
        if normalised in self._whole_keys:
            return True
        if self._substring_re is not None and self._substring_re.search(normalised):
            return True
        if not self._word_stems:
            return False
        return any(fold_key(word) in self._word_stems for word in _KEY_WORD_RE.findall(key))
