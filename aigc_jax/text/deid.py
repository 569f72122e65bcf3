"""De-identification of free text before it is written anywhere: identifiers become bracketed tags.

What is replaced (HIPAA Safe Harbor's categories that can be found by their form), in this order:

  [EMAIL]  e-mail addresses                     [URL]    web addresses
  [IP]     IPv4 addresses                       [SSN]    ddd-dd-dddd
  [PHONE]  phone and fax numbers (7+ digits in the usual groupings, optional +country code)
  [DATE]   dates with a day or a month: 12/03/2024, 2024-03-12, 3 March 2024, Mar 3rd, 2024, March 2024
           (a year alone stays: Safe Harbor keeps years)
  [ID]     the value after a label such as MRN, record number, patient ID, accession, account, NHS or SSN;
           any run of 6+ digits; codes of capitals and 4+ digits (AB123456)
  [AGE>89] ages of 90 and above, written with years/yo (Safe Harbor merges them)
  [NAME]   the word(s) after a title (Dr, Mr, Mrs, Ms, Prof) or after a label (Patient:, Name:, Signed by:,
           Dictated by:, Physician:); every *known* identifier, wherever it occurs, ignoring case: the values
           of a record's identifier fields (its patient's name, number) and the names in a names file, each
           also word by word (words of 3+ letters), so "Doe" goes as well as "Jane Doe".
  user     extra patterns: (tag, regex) pairs (`--deid_patterns=FILE.json`: {"TAG": "regex", ...}), applied
           first, replaced by [TAG].

This is a pattern-based scrubber, not a guarantee: a name with no title, no label and absent from the known
list stays. Give the names you know (a names file, the identifier fields of each record) and read a sample of
the output before sharing anything trained on it. Counts of each replacement (never the replaced text) go
into the prepare report.
"""

import collections
import dataclasses
import re

_MONTH = (r'(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|'
          r'Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)')
_DAY = r'\d{1,2}(?:st|nd|rd|th)?'
_ID_LABEL = (r'(?:MRN|MR\s*#|medical\s+record(?:\s+(?:number|no\.?))?|record\s+(?:number|no\.?)|patient\s+ID|'
             r'accession(?:\s+(?:number|no\.?))?|acc\s*#|account(?:\s+(?:number|no\.?))?|SSN|NHS(?:\s+number)?|'
             r'ID)')
_NAME_WORD = r"[A-Z](?:[a-z]|'[A-Z])[a-zA-Z'\-]*"   # capitalized, not all capitals (MRN, CT); O'Brien
_TITLE = r'(?:Dr|Mr|Mrs|Ms|Miss|Prof|Doctor)'
_NAME_LABEL = (r'(?:Patient(?:\s+name)?|Name|Signed\s+by|Dictated\s+by|Electronically\s+signed\s+by|'
               r'(?:Referring\s+|Attending\s+)?Physician|Attending)')

# (tag, pattern, the group to replace: 0 is the whole match). Order matters: the first to match a span wins.
PATTERNS = (
    ('EMAIL', r'[\w.+-]+@[\w-]+(?:\.[\w-]+)+', 0),
    ('URL', r'\b(?:https?://|www\.)\S+', 0),
    ('IP', r'\b\d{1,3}(?:\.\d{1,3}){3}\b', 0),
    ('SSN', r'\b\d{3}-\d{2}-\d{4}\b', 0),
    ('DATE', r'\b\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?)?\b', 0),
    ('DATE', r'\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b', 0),
    ('DATE', rf'\b{_DAY}\s+(?:of\s+)?{_MONTH}\.?,?\s+\d{{2,4}}\b', 0),
    ('DATE', rf'\b{_MONTH}\.?\s+{_DAY},?\s+\d{{2,4}}\b', 0),
    ('DATE', rf'\b{_MONTH}\.?\s+{_DAY}\b', 0),
    ('DATE', rf'\b{_MONTH}\.?,?\s+\d{{4}}\b', 0),
    ('PHONE', r'(?<![\w-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}\b', 0),
    ('ID', rf'(?i:\b{_ID_LABEL})\s*(?:[:#]|no\.?|number)?\s*((?=[A-Za-z/-]*\d)[A-Za-z0-9][A-Za-z0-9/-]{{2,}})', 1),
    ('ID', r'\b\d{6,}\b', 0),
    ('ID', r'\b(?=(?:[A-Z-]*\d){4})(?=[0-9-]*[A-Z])[A-Z0-9-]{5,}\b', 0),
    ('AGE>89', r'(?i)\b(?:9\d|1[0-4]\d)(?:\s*|-)(?:years?|yrs?|y/?o|year-old)\b(?:[\s-]old)?', 0),
    ('NAME', rf'\b{_TITLE}\.?\s+((?:{_NAME_WORD}\s+)?{_NAME_WORD})', 1),
    ('NAME', rf'(?i:\b{_NAME_LABEL})\s*:\s*({_NAME_WORD}(?:,?\s+{_NAME_WORD}){{0,2}})', 1),
)


def _compile(patterns):
  return tuple((tag, re.compile(p), g) for tag, p, g in patterns)


_COMPILED = _compile(PATTERNS)


def _known_pattern(values) -> re.Pattern | None:
  """One regex for the known identifiers: each value, and each of its words of 3+ letters or digits."""
  terms = set()
  for v in values:
    v = str(v).strip()
    if len(v) >= 2:
      terms.add(v)
      terms.update(w for w in re.split(r"[\s,;]+", v) if len(w) >= 3)
  if not terms:
    return None
  alternatives = sorted((re.escape(t) for t in terms), key=len, reverse=True)  # longest first
  return re.compile(r'(?<!\w)(?:' + '|'.join(alternatives) + r')(?!\w)', re.IGNORECASE)


@dataclasses.dataclass
class Scrubber:
  """`scrub(text, known=...)` → the text with identifiers tagged; `counts` adds up what was replaced.

  names: identifiers known for every document (a names file); extra: (tag, regex) pairs applied first."""
  names: tuple[str, ...] = ()
  extra: tuple[tuple[str, str], ...] = ()
  counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)

  def __post_init__(self):
    for tag, pattern in self.extra:
      try:
        re.compile(pattern)
      except re.error as e:
        raise ValueError(f'de-identification pattern {tag}={pattern!r} is not a valid regular expression: {e}. '
                         'Fix it in the --deid_patterns file.') from None
    self._patterns = _compile([(tag, p, 0) for tag, p in self.extra]) + _COMPILED
    self._names = _known_pattern(self.names)

  def scrub(self, text: str, known=()) -> str:
    """`text` with every identifier replaced by its tag; `known`: this document's own identifiers."""
    for tag, regex, group in self._patterns:
      text = self._sub(regex, tag, group, text)
    for regex in (_known_pattern(known), self._names):
      if regex is not None:
        text = self._sub(regex, 'NAME', 0, text)
    return text

  def _sub(self, regex, tag, group, text):
    def replace(m):
      if m.group(group) is None:
        return m.group(0)
      self.counts[tag] += 1
      start, end = m.span(group)
      return m.group(0)[:start - m.start()] + f'[{tag}]' + m.group(0)[end - m.start():]
    return regex.sub(replace, text)
