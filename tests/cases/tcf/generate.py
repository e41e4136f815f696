"""Regenerate tests/cases/tcf/vectors.json: TC strings built with the test encoder in
tests/test_consent.py, decoded by the IAB's reference decoder (`@iabtcf/core`, installed here
from the npm registry into a temporary directory), with the decision Kaeru must take for
vendor 755 derived from the reference's fields (not from Kaeru's decoder).

    .venv/bin/python tests/cases/tcf/generate.py

Needs `node` and `npm`; the test that reads the file needs neither.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.test_consent import BitWriter, core_bits, to_base64url  # noqa: E402

IABTCF = "@iabtcf/core@1.5.6"
VENDOR = 755  # the vendor id each vector is judged for (KAERU_TCF_VENDOR_ID)
REQUIRED = {1, 3, 4}
GRANTED: dict[str, Any] = {"purposes": range(1, 12), "vendors": (2, 52, 755, 793)}


def core(**fields: Any) -> str:
    return to_base64url(core_bits(**{**GRANTED, **fields}))


def segment(kind: int, write: Any) -> str:
    w = BitWriter()
    w.uint(kind, 3)
    write(w)
    return to_base64url(w.text())


def disclosed(ids: tuple[int, ...], *, ranges: bool = False) -> str:
    return segment(1, lambda w: w.vendors(ids, ranges=ranges))


def publisher_tc(consents: tuple[int, ...], li: tuple[int, ...], custom: int = 0) -> str:
    def write(w: BitWriter) -> None:
        w.flags(consents, 24)
        w.flags(li, 24)
        w.uint(custom, 6)
        w.flags(range(1, custom + 1, 2), custom)
        w.flags((), custom)

    return segment(3, write)


def vectors() -> list[tuple[str, str]]:
    ok = core()
    created = datetime(2025, 6, 2, 7, 45, 0, tzinfo=UTC)
    r = "publisher restriction"
    return [
        ("consent, no restrictions", ok),
        ("consent, all purposes, LI too", core(purposes_li=(2, 7, 8), vendor_li=(755, 800))),
        ("consent as ranges", core(ranges=True, li_ranges=True, vendor_li=(1, 2, 3, 755))),
        (
            "other fields",
            core(
                created=created,
                last_updated=created,
                cmp_id=4095,
                language="FR",
                special_features=(1, 2),
                purpose_one_treatment=True,
            ),
        ),
        ("no vendor consent for 755", core(vendors=(2, 52, 754, 756))),
        ("purpose 4 missing", core(purposes=(1, 2, 3, 5))),
        (f"{r}: purpose 3 not allowed for 755", core(restrictions=[(3, 0, [(755, 755)])])),
        (f"{r}: purpose 4 not allowed for 700-800", core(restrictions=[(4, 0, [(700, 800)])])),
        (f"{r}: purpose 1 not allowed for 755", core(restrictions=[(1, 0, [(755, 755)])])),
        (f"{r}: purpose 3 requires LI for 755", core(restrictions=[(3, 2, [(755, 755)])])),
        (f"{r}: purpose 4 requires LI for 1-65535", core(restrictions=[(4, 2, [(1, 65535)])])),
        (f"{r}: purpose 1 requires LI for 755", core(restrictions=[(1, 2, [(755, 755)])])),
        (f"{r}: purpose 3 requires consent for 755", core(restrictions=[(3, 1, [(755, 755)])])),
        (f"{r}: purpose 2 not allowed for 755", core(restrictions=[(2, 0, [(755, 755)])])),
        (f"{r}: purpose 7 requires LI for 755", core(restrictions=[(7, 2, [(755, 755)])])),
        (
            f"{r}: purpose 3 not allowed for others",
            core(restrictions=[(3, 0, [(2, 2), (756, 900)])]),
        ),
        (f"{r}: purpose 4 not allowed for 1-754", core(restrictions=[(4, 0, [(1, 754)])])),
        (
            f"{r}s: several, one hits 755",
            core(
                restrictions=[
                    (2, 1, [(1, 100)]),
                    (7, 0, [(755, 755)]),
                    (4, 0, [(10, 20), (750, 760)]),
                ]
            ),
        ),
        (
            f"{r}s: several, none hits 755",
            core(
                restrictions=[
                    (2, 1, [(1, 100)]),
                    (3, 1, [(755, 755)]),
                    (4, 0, [(10, 20), (756, 760)]),
                ]
            ),
        ),
        (f"{r}: overlapping ranges", core(restrictions=[(3, 0, [(700, 760), (750, 800)])])),
        (f"{r}: restriction type 3 is undefined", core(restrictions=[(3, 3, [(755, 755)])])),
        (f"{r}: purpose id 0", core(restrictions=[(0, 0, [(755, 755)])])),
        (f"{r}: range ends before it starts", core(restrictions=[(3, 0, [(760, 755)])])),
        (f"{r}: truncated", core(restrictions=[(3, 0, [(755, 755)])])[:-4]),
        ("core without NumPubRestrictions", to_base64url(core_bits(**GRANTED)[:-12])),
        ("disclosed vendors", f"{ok}.{disclosed((2, 52, 755, 793, 804))}"),
        ("disclosed vendors as ranges", f"{ok}.{disclosed((*range(1, 40), 755), ranges=True)}"),
        (
            "allowed vendors (v2.0 segment type 2)",
            f"{ok}.{segment(2, lambda w: w.vendors((755,), ranges=False))}",
        ),
        ("publisher TC", f"{ok}.{publisher_tc((1, 3, 4), (2,))}"),
        ("publisher TC with custom purposes", f"{ok}.{publisher_tc((1,), (), custom=5)}"),
        (
            "disclosed vendors and publisher TC",
            f"{ok}.{disclosed((755,))}.{publisher_tc((1,), ())}",
        ),
        ("truncated disclosed vendors bitfield", f"{ok}.{disclosed((2, 755, 900))[:-8]}"),
        (
            "truncated disclosed vendors ranges",
            f"{ok}.{disclosed((1, 3, 5, 7, 755), ranges=True)[:-5]}",
        ),
        ("disclosed vendors segment of one character", f"{ok}.I"),
        ("truncated publisher TC", f"{ok}.{publisher_tc((1, 3, 4), (2,))[:5]}"),
        ("publisher TC custom purposes cut off", f"{ok}.{publisher_tc((1,), (), custom=40)[:-3]}"),
        ("garbage segment (type 6)", f"{ok}.zzzzzzzz"),
        ("garbage segment (type 4)", f"{ok}.gAAAAAAAAAAAA"),
        ("garbage segment (type 5)", f"{ok}.oAAAAAAAAAAAA"),
        ("garbage segment (type 7)", f"{ok}.____"),
        ("second core-type segment that is not a core", f"{ok}.AAAA"),
        ("valid segments, then garbage", f"{ok}.{disclosed((755,))}.zz"),
        ("empty segment", f"{ok}."),
        ("garbage core", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"),
    ]


def random_vectors(count: int, seed: int = 11) -> list[tuple[str, str]]:
    """Seeded random but well-formed strings: purposes, vendors (bitfield or ranges),
    restrictions and optional segments, so field agreement is checked beyond the cases above."""
    rng = random.Random(seed)
    cases = []
    for n in range(count):
        pick = lambda k, hi: tuple(sorted(rng.sample(range(1, hi + 1), k)))  # noqa: E731
        restrictions = [
            (
                rng.randint(1, 11),
                rng.randint(0, 2),
                [
                    tuple(sorted((rng.randint(1, 900), rng.randint(1, 900))))
                    for _ in range(rng.randint(1, 3))
                ],
            )
            for _ in range(rng.randint(0, 3))
        ]
        tc = core(
            purposes=pick(rng.randint(0, 11), 11) if rng.random() < 0.3 else range(1, 12),
            purposes_li=pick(rng.randint(0, 5), 11),
            vendors=(*pick(rng.randint(0, 30), 900), *((VENDOR,) if rng.random() < 0.7 else ())),
            ranges=rng.random() < 0.5,
            vendor_li=pick(rng.randint(0, 10), 900),
            li_ranges=rng.random() < 0.5,
            restrictions=restrictions,
        )
        if rng.random() < 0.5:
            tc += "." + disclosed(pick(rng.randint(1, 20), 900), ranges=rng.random() < 0.5)
        if rng.random() < 0.3:
            tc += "." + publisher_tc(pick(rng.randint(0, 5), 11), pick(rng.randint(0, 3), 11))
        cases.append((f"random {n}", tc))
    return cases


def expected_decision(reference: dict[str, Any]) -> bool:
    """Kaeru's rule, applied to the reference decoder's fields."""
    if not reference["valid"]:
        return False
    if not REQUIRED <= set(reference["purposes_consent"]):
        return False
    if VENDOR not in reference["vendor_consents"]:
        return False
    return not any(
        r["purpose_id"] in REQUIRED
        and r["restriction_type"] in (0, 2)
        and any(start <= VENDOR <= end for start, end in r["vendor_ranges"])
        for r in reference["publisher_restrictions"]
    )


def reference_decode(strings: list[str]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as prefix:
        subprocess.run(
            ["npm", "install", "--silent", "--no-save", "--prefix", prefix, IABTCF], check=True
        )
        out = subprocess.run(
            ["node", str(HERE / "reference.cjs")],
            input=json.dumps(strings),
            capture_output=True,
            text=True,
            check=True,
            env={"NODE_PATH": str(Path(prefix) / "node_modules"), "PATH": "/usr/bin:/bin"},
        )
    decoded: list[dict[str, Any]] = json.loads(out.stdout)
    return decoded


def main() -> None:
    cases = vectors() + random_vectors(24)
    decoded = reference_decode([tc for _, tc in cases])
    data = {
        "source": f"decoded by {IABTCF} (the IAB's reference decoder); see generate.py",
        "vendor_id": VENDOR,
        "cases": [
            {
                "description": description,
                "tc_string": tc,
                "reference": reference,
                "personalise": expected_decision(reference),
            }
            for (description, tc), reference in zip(cases, decoded, strict=True)
        ],
    }
    (HERE / "vectors.json").write_text(json.dumps(data, indent=1) + "\n")
    valid = sum(case["reference"]["valid"] for case in data["cases"])
    print(f"{len(cases)} vectors, {valid} valid for the reference decoder")


if __name__ == "__main__":
    main()
