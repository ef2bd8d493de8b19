#!/usr/bin/env python3
"""Generates unicode_normalization_tables.cpp (NFC/NFD/NFKC/NFKD data) from Python's unicodedata.

Run: python3 src/tokenizer/gen_unicode_normalization_tables.py > src/tokenizer/unicode_normalization_tables.cpp

Every property is derived from unicodedata's primitives (combining(), decomposition(),
normalize()); the bit layout must match unicode_normalization.h.
"""
import sys
import unicodedata

S_BASE, L_BASE, V_BASE, T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
L_COUNT, V_COUNT, T_COUNT = 19, 21, 28
S_COUNT = L_COUNT * V_COUNT * T_COUNT

# Flag bits above the 8-bit combining class (keep in sync with unicode_normalization.h).
CANONICAL_DECOMP = 1 << 8
COMPAT_DECOMP = 1 << 9
NFC_QC_SHIFT, NFKC_QC_SHIFT = 10, 12  # 2 bits each: 0 yes, 1 maybe, 2 no
NFD_QC_NO, NFKD_QC_NO = 1 << 14, 1 << 15
BOUNDARY = {'NFC': 1 << 16, 'NFD': 1 << 17, 'NFKC': 1 << 18, 'NFKD': 1 << 19}
COMPOSES_BACKWARD = 1 << 20


def is_char(cp):
    return not 0xD800 <= cp <= 0xDFFF


def ccc(cp):
    return unicodedata.combining(chr(cp))


def is_hangul_syllable(cp):
    return S_BASE <= cp < S_BASE + S_COUNT


def single_decomposition(cp):
    """The one-level mapping from UnicodeData.txt: (is_compat, [code points]) or None."""
    d = unicodedata.decomposition(chr(cp))
    if not d:
        return None
    parts = d.split()
    compat = parts[0].startswith('<')
    if compat:
        parts = parts[1:]
    return compat, [int(p, 16) for p in parts]


# Primary composites: canonical pairs whose composite survives NFC (excludes singletons,
# non-starter decompositions and CompositionExclusions.txt; Hangul stays algorithmic).
compositions = []
for cp in range(0x110000):
    if not is_char(cp):
        continue
    d = single_decomposition(cp)
    if d and not d[0] and len(d[1]) == 2 and unicodedata.normalize('NFC', chr(cp)) == chr(cp):
        compositions.append((d[1][0], d[1][1], cp))
compositions.sort()
seconds = {b for _, b, _ in compositions}
seconds.update(range(V_BASE, V_BASE + V_COUNT))
seconds.update(range(T_BASE + 1, T_BASE + T_COUNT))


def info(cp):
    if not is_char(cp):
        return 0
    c = chr(cp)
    value = ccc(cp)
    d = single_decomposition(cp)
    if d:
        value |= COMPAT_DECOMP if d[0] else CANONICAL_DECOMP
    nfd, nfkd = unicodedata.normalize('NFD', c), unicodedata.normalize('NFKD', c)
    nfc, nfkc = unicodedata.normalize('NFC', c), unicodedata.normalize('NFKC', c)
    if nfd != c:
        value |= NFD_QC_NO
    if nfkd != c:
        value |= NFKD_QC_NO
    # Quick check: "no" where the character can never appear in the form, "maybe" where it may
    # combine with what precedes it. Deriving "no" from normalize() can only over-approximate the
    # official property, which keeps the quick check's "yes" answers sound.
    nfc_qc = 2 if (d and not d[0] and nfc != c) else (1 if cp in seconds else 0)
    nfkc_qc = 2 if (nfc_qc == 2 or nfkc != c or nfkd != nfd) else (1 if cp in seconds else 0)
    value |= nfc_qc << NFC_QC_SHIFT | nfkc_qc << NFKC_QC_SHIFT
    if cp in seconds:
        value |= COMPOSES_BACKWARD
    # A boundary before cp: nothing before it can reorder with or compose into its decomposition.
    if ccc(cp) == 0:
        for form, decomposed, composing in (('NFC', nfd, True), ('NFD', nfd, False),
                                            ('NFKC', nfkd, True), ('NFKD', nfkd, False)):
            first = ord(decomposed[0])
            if ccc(first) == 0 and not (composing and first in seconds):
                value |= BOUNDARY[form]
    return value


infos = [info(cp) for cp in range(0x110000)]
limit = max(cp for cp in range(0x110000) if infos[cp] != infos[0x10FFFF]) + 1
default = infos[0x10FFFF]
assert default == infos[0x20] and all(infos[cp] == infos[0x20] for cp in range(0x80)), \
    'ASCII must be inert: the fast path relies on it'

records = sorted(set(infos[:limit]) | {default}, key=lambda v: (v != default, v))
record_index = {v: i for i, v in enumerate(records)}
assert record_index[default] == 0

# Two-level table: pick the block size that gives the smallest arrays.
best = None
for shift in range(4, 10):
    size = 1 << shift
    padded = (limit + size - 1) // size * size
    blocks, stage1 = {}, []
    for start in range(0, padded, size):
        block = tuple(record_index[infos[cp]] if cp < limit else 0 for cp in range(start, start + size))
        stage1.append(blocks.setdefault(block, len(blocks)))
    stage2_width = 1 if len(records) <= 256 else 2
    stage1_width = 1 if len(blocks) <= 256 else 2
    cost = len(stage1) * stage1_width + len(blocks) * size * stage2_width
    if best is None or cost < best[0]:
        best = (cost, shift, padded, stage1, blocks, stage1_width, stage2_width)
_, shift, padded, stage1, blocks, stage1_width, stage2_width = best
# unicode_normalization.h declares both stages as uint8_t arrays.
assert stage1_width == 1 and stage2_width == 1, 'tables outgrew uint8_t indices: widen them in the header'

decomp = []
pool = []
for cp in range(0x110000):
    if not is_char(cp):
        continue
    d = single_decomposition(cp)
    if d:
        compat, parts = d
        assert len(parts) < 32 and len(pool) < (1 << 16)
        decomp.append((cp, len(pool) << 8 | len(parts) << 1 | int(compat)))
        pool.extend(parts)

ctype = {1: 'uint8_t', 2: 'uint16_t'}
out = []
w = out.append


def emit_array(decl, values, fmt, per_line):
    w('%s = {\n' % decl)
    for i in range(0, len(values), per_line):
        w('    ' + ','.join(fmt % v for v in values[i:i + per_line]) + ',\n')
    w('};\n\n')


w('// Generated by gen_unicode_normalization_tables.py from Unicode %s (Python unicodedata); do not edit.\n' %
  unicodedata.unidata_version)
w('#include "tokenizer/unicode_normalization.h"\n\nnamespace anvil::unicode_normalization_tables {\n\n')
w('const char kUnicodeVersion[] = "%s";\n' % unicodedata.unidata_version)
w('const uint32_t kInfoLimit = 0x%X;\n' % padded)
w('const unsigned kInfoShift = %d;\n\n' % shift)
w('// Property records: combining class in bits 0-7, flags above (see unicode_normalization.h).\n')
emit_array('const uint32_t kInfoRecords[%d]' % len(records), records, '0x%X', 8)
w('// Block index per 2^kInfoShift code points below kInfoLimit.\n')
emit_array('const %s kInfoStage1[%d]' % (ctype[stage1_width], len(stage1)), stage1, '%d', 32)
stage2 = [v for block in sorted(blocks, key=blocks.get) for v in block]
w('// Record index per code point, block after block.\n')
emit_array('const %s kInfoStage2[%d]' % (ctype[stage2_width], len(stage2)), stage2, '%d', 32)
w('// One-level decompositions (UnicodeData.txt field 5), sorted by code point; value is\n'
  '// pool offset << 8 | length << 1 | compatibility.\n')
w('const size_t kDecompositionCount = %d;\n' % len(decomp))
emit_array('const uint32_t kDecompositionKeys[%d]' % len(decomp), [c for c, _ in decomp], '0x%X', 12)
emit_array('const uint32_t kDecompositionValues[%d]' % len(decomp), [v for _, v in decomp], '0x%X', 12)
emit_array('const uint32_t kDecompositionPool[%d]' % len(pool), pool, '0x%X', 12)
w('// Primary composites (first, second) -> composite, sorted by (first, second).\n')
w('const size_t kCompositionCount = %d;\n' % len(compositions))
emit_array('const CompositionPair kCompositions[%d]' % len(compositions), compositions, '{0x%X,0x%X,0x%X}', 6)
w('}  // namespace anvil::unicode_normalization_tables\n')
sys.stdout.write(''.join(out))
print('records=%d shift=%d blocks=%d decompositions=%d pool=%d compositions=%d' %
      (len(records), shift, len(blocks), len(decomp), len(pool), len(compositions)), file=sys.stderr)
