"""What a creative says besides the shop's own data, in each language Kaeru's creatives speak:
the ad label and its tooltip, the call to action, the sale marker and the offer's code label.

A locale (`ja-JP`, from KAERU_ADVERTISER_LOCALES) picks its language's wording; the settings
refuse a language missing here (`adserver.config.settings.CREATIVE_LANGUAGES` lists the same
languages, a test keeps them equal). The ad label and its tooltip go into unquoted attributes
or short badges: one word each, no spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True, slots=True)
class Wording:
    ad: str  # the badge every creative carries
    ad_title: str  # its tooltip
    shop_now: str  # the call to action
    sale: str  # the marker of a price on sale (its tooltip)
    code: str  # before the offer's code


WORDINGS = MappingProxyType(
    {
        "en": Wording("Ad", "Advertisement", "Shop now", "Sale", "Code:"),
        # Japanese ads are labelled 広告 (or PR); the call to action reads "see details".
        "ja": Wording("広告", "広告", "詳しく見る", "セール", "コード:"),
        "de": Wording("Anzeige", "Anzeige", "Jetzt kaufen", "Angebot", "Code:"),
        # French typography puts a (narrow) no-break space before the colon.
        "fr": Wording("Pub", "Publicité", "Découvrir", "Promo", "Code\u202f:"),
    }
)


def wording_for(locale: str) -> Wording:
    """The wording of the locale's language (`ja-JP` → Japanese); English when unknown."""
    language = locale.partition("-")[0].lower()
    return WORDINGS.get(language, WORDINGS[DEFAULT_LANGUAGE])
