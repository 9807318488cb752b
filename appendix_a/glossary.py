"""A.5 术语表: a bilingual (中文 / English) glossary as data, a lookup, and a printer.

    python -m appendix_a.glossary                       # every term, grouped A.5.1 / A.5.2 / A.5.3
    python -m appendix_a.glossary --lookup GQA          # English, 中文 or an alias
    python -m appendix_a.glossary --category "A.5.2 GPU" --json

The terms live in ``glossary_terms.py``. Each has one English name, one Chinese name, a category, aliases
(acronyms, other spellings), a one-line definition and the sections that treat it. A test checks that no
name or alias is used twice and that every glossary term appearing in a chapter README heading resolves.
"""

from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass

from appendix_a.glossary_terms import TERMS
from common.cli import make_parser
from common.report import emit_json, print_table


@dataclass(frozen=True)
class Term:
    en: str
    zh: str
    category: str
    aliases: tuple[str, ...]
    definition: str
    sections: str

    @property
    def names(self) -> tuple[str, ...]:
        return (self.en, self.zh, *self.aliases)


GLOSSARY: tuple[Term, ...] = tuple(Term(*t) for t in TERMS)
CATEGORIES = tuple(dict.fromkeys(t.category for t in GLOSSARY))


def _key(name: str) -> str:
    return " ".join(name.casefold().split())


def duplicates(terms: tuple[Term, ...] = GLOSSARY) -> list[str]:
    """Names (English, Chinese or alias, case-insensitive) claimed twice, by two entries or within one.

    One exception: a Chinese name may equal the English one where Chinese writes the term in Latin
    letters (CUDA).
    """
    seen: dict[str, int] = {}
    for t in terms:
        names = [t.en, *t.aliases] + ([t.zh] if _key(t.zh) != _key(t.en) else [])
        for n in names:
            seen[_key(n)] = seen.get(_key(n), 0) + 1
    return sorted(n for n, c in seen.items() if c > 1)


INDEX = {_key(n): t for t in GLOSSARY for n in t.names}


def lookup(name: str) -> Term | None:
    return INDEX.get(_key(name))


def _pattern(name: str) -> re.Pattern[str]:
    escaped = re.escape(name)
    if name.isascii():  # whole words only: "SM" must not match inside "SMS"
        return re.compile(rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])", re.IGNORECASE)
    return re.compile(escaped)


PATTERNS = [(n, _pattern(n)) for t in GLOSSARY for n in t.names]


def terms_in(text: str) -> list[str]:
    """The glossary names (as the glossary spells them) that occur in ``text``."""
    return [n for n, p in PATTERNS if p.search(text)]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m appendix_a.glossary", __doc__)
    parser.add_argument("--lookup", help="a term in English, Chinese or an alias")
    parser.add_argument("--category", choices=CATEGORIES, help="one section of A.5")
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)
    if args.lookup:
        t = lookup(args.lookup)
        if t is None:
            print(f"{args.lookup!r} is not in the glossary ({len(GLOSSARY)} terms)", file=sys.stderr)
            return 1
        terms = [t]
    else:
        terms = [t for t in GLOSSARY if args.category in (None, t.category)]
    if not args.json:
        for cat in CATEGORIES:
            rows = [{"English": t.en, "中文": t.zh, "also": ", ".join(t.aliases), "meaning": t.definition,
                     "§": t.sections} for t in terms if t.category == cat]
            if rows:
                print_table(rows, title=cat)
                print()
    emit_json({"terms": [asdict(t) for t in terms], "count": len(terms)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
