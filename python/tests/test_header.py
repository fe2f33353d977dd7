"""The ctypes mirror matches include/sageattn.h field by field and enum by enum (in a checkout;
skipped where the header is not beside the package)."""

import re
from pathlib import Path

import pytest

from sageattn import _capi

HEADER = Path(__file__).resolve().parents[2] / "include" / "sageattn.h"
pytestmark = pytest.mark.skipif(not HEADER.is_file(), reason=f"no {HEADER}: not a repository checkout")


def _source():
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _struct_fields(name):
    body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (name, name), _source(), re.S).group(1)
    names = []
    for decl in filter(None, (d.strip() for d in body.split(";"))):
        first, *rest = decl.split(",")
        names.append(first.split()[-1].lstrip("*"))
        names += [r.strip() for r in rest]
    return names


def _enum_values(name):
    body = re.search(r"typedef enum %s \{(.*?)\} %s;" % (name, name), _source(), re.S).group(1)
    values, next_value = {}, 0
    for item in filter(None, (i.strip() for i in body.split(","))):
        key, _, value = (p.strip() for p in item.partition("="))
        next_value = int(value) if value else next_value
        values[key] = next_value
        next_value += 1
    return values


@pytest.mark.parametrize("c_name,py", [("sage_args", _capi.SageArgs), ("sage_options", _capi.SageOptions),
                                       ("sage_plan", _capi.SagePlan)])
def test_struct_fields_in_order(c_name, py):
    assert [f[0] for f in py._fields_] == _struct_fields(c_name)


@pytest.mark.parametrize("c_name,py", [("sage_status", _capi.Status), ("sage_dtype", _capi.DType),
                                       ("sage_causal", _capi.Causal), ("sage_algorithm", _capi.Algorithm),
                                       ("sage_qk_groups", _capi.QKGroups), ("sage_pv_type", _capi.PV),
                                       ("sage_toggle", _capi.Toggle), ("sage_device", _capi.Device)])
def test_enum_values(c_name, py):
    values = _enum_values(c_name)
    values.pop("SAGE_STATUS_COUNT_", None)  # the range sentinel, not a status
    assert sorted(values.values()) == sorted(int(m) for m in py)
    if py is _capi.Status:
        assert {k.removeprefix("SAGE_"): v for k, v in values.items()} == {m.name: int(m) for m in py}
