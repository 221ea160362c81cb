"""What ``exchangectl import`` tells the clerk: Chinese first, then English, one message per event.

The clerk who loads a county roster reads Chinese; the operator who helps on the phone may read
English. Each message says what happened and what to do next, naming headings, lines and files.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingType
from pathlib import Path
from typing import Any

from shared.observability import redact

# The Chinese name of each person field, as a county roster heads its column.
FIELD_ZH = {
    "id_number": "公民身份号码",
    "name": "姓名",
    "sex": "性别",
    "birth_date": "出生日期",
    "hukou_division": "户籍地行政区划代码",
    "residence_division": "现居住地行政区划代码",
}

# The rules of the rejects file a clerk meets most, in Chinese (the file names the rule either way).
RULE_ZH = {
    "no-formula-prefix": "不得以 = + - @、制表符或回车开头（电子表格会把它当作公式执行）",
    "missing": "缺少必填项",
    "no-duplicate": "与前面某行或已登记人员的身份号码重复",
    "gb11643-check-digit": "身份号码校验位错误",
    "gb2260-known-division": "行政区划代码不存在",
    "not-in-future": "日期晚于今天",
}


def missing_columns(
    missing: list[str],
    columns: MappingType[str, list[str]],
    header: list[str],
    mapping_name: str,
    mapping_path: Path | None,
) -> str:
    """Which required column the roster lacks, the headings that would do, and how to map its own."""
    known = {alias for aliases in columns.values() for alias in aliases}
    unknown = [h for h in header if h and h not in known]
    example = unknown[0] if unknown else "你的表头"
    where = str(mapping_path) if mapping_path else mapping_name
    zh, en = [], []
    for field in missing:
        label = FIELD_ZH.get(field, field)
        accepted = columns.get(field, [])
        zh.append(
            f"花名册缺少必需的列“{label}”（字段 {field}）。可用的表头：{'、'.join(accepted) or '（映射文件未列出）'}。"
        )
        en.append(
            f"The roster has no column for {field} ({label}). "
            f"Headings that are read as {field}: {', '.join(accepted) or '(none in the mapping)'}."
        )
    first = missing[0]
    if any(redact(h) != h for h in header):  # a person, not headings: never echoed
        example = "你的表头"
        found_zh = "（第一行像是数据，含身份证号：花名册是否缺少表头行？）"
        found_en = "(the first row looks like data, an identity number: is the heading row missing?)"
    else:
        found_zh = "、".join(h for h in header if h) or "（无）"
        found_en = ", ".join(h for h in header if h) or "(none)"
    line = f"{first}: [{', '.join([*columns.get(first, []), example])}]"
    return "\n".join(
        [
            *zh,
            f"如果花名册用的是别的表头，请复制映射文件 {where}，在 columns 下把该表头加入对应字段，例如：",
            f"    {line}",
            "然后加上 --mapping <复制后的文件> 重新运行。整列都相同的值也可写在 defaults 下。",
            f"花名册中的表头：{found_zh}",
            *en,
            f"If your roster heads it differently, copy the mapping file {where}, add your heading to "
            "that field's list under columns, for example:",
            f"    {line}",
            "and run again with --mapping <your copy>. A value the whole column shares can go under defaults.",
            f"Headings in the roster: {found_en}",
        ]
    )


def empty_roster() -> str:
    return "花名册是空的，没有表头行。\nThe roster is empty: it has no heading row."


def unknown_format(suffix: str) -> str:
    return (
        f"无法识别的花名册格式 {suffix!r}：请使用 .csv 或 .xlsx。\n"
        f"Unknown roster format {suffix!r}: use .csv or .xlsx."
    )


def undecodable(encoding: str, at: int) -> str:
    return (
        f"花名册不是有效的 {encoding} 编码（约第 {at} 字节处）；请用 --encoding utf-8 或 --encoding gb18030 指定。\n"
        f"The roster is not valid {encoding} near byte {at}; name its encoding with --encoding utf-8 or gb18030."
    )


def bad_mapping(path: Path | None) -> str:
    return f"映射文件 {path} 没有 columns 部分。\nThe mapping file {path} has no 'columns' section."


def unreachable(error: BaseException) -> str:
    """The registry database cannot be reached (the DSN itself is not repeated: it may hold a password)."""
    kind = type(error).__name__
    return (
        f"无法连接登记库数据库（{kind}）：请检查 --dsn 或环境变量 REGISTRY_DATABASE_URL，以及数据库是否在运行。\n"
        f"Cannot reach the registry database ({kind}): check --dsn or REGISTRY_DATABASE_URL, "
        "and that the database is running."
    )


def busy() -> str:
    return (
        "同一份花名册正在由另一个导入进程导入：请等它结束，或先停止它。\n"
        "Another import of this roster is running: wait for it to finish or stop it."
    )


def resumed(last_line: int) -> str:
    """A run that continues an earlier, stopped one."""
    return (
        f"续导：上次已提交到第 {last_line} 行，从第 {last_line + 1} 行继续导入，已导入的行不会重复。\n"
        f"Resuming: an earlier run committed every line up to {last_line}; "
        f"this run starts at line {last_line + 1}, nothing is imported twice."
    )


def already_done(last_line: int) -> str:
    return (
        f"这份花名册此前已全部导入（到第 {last_line} 行），本次没有新写入。\n"
        f"This roster was imported completely before (up to line {last_line}); nothing new was written."
    )


def interrupted() -> str:
    return (
        "导入已中断：未完成的一批已回滚。再次运行同一命令，会从最后提交的一批之后继续。\n"
        "Interrupted: the open batch was rolled back. Run the same command again to resume after the last "
        "committed batch."
    )


def summary(s: Any) -> str:
    """The closing lines of a run (``s`` is the importer's summary)."""
    done = s.state == "done"
    state_zh = "导入完成" if done else "导入暂停（再次运行同一命令即可继续）"
    state_en = "import complete" if done else "import stopped (run the same command again to resume)"
    where = f"从第 {s.resumed_after_line + 1} 行续导，" if s.resumed_after_line and s.rows_read else ""
    where_en = f"resumed at line {s.resumed_after_line + 1}; " if s.resumed_after_line and s.rows_read else ""
    lines = [
        f"{state_zh}：{where}本次导入 {s.imported} 人，已登记跳过 {s.unchanged} 人，拒收 {s.rejected} 行"
        f"（累计 {s.total_imported} / {s.total_unchanged} / {s.total_rejected}），用时 {s.seconds:.1f} 秒；"
        f"拒收清单：{s.rejects_file}",
        f"{state_en}: {where_en}{s.imported} imported, {s.unchanged} already registered, {s.rejected} rejected "
        f"this run ({s.total_imported} / {s.total_unchanged} / {s.total_rejected} in all) in {s.seconds:.1f}s, "
        f"{s.rows_per_second:,.0f} rows/s; rejects in {s.rejects_file}",
    ]
    for rule, n in sorted(s.rules.items()):
        zh = RULE_ZH.get(rule)
        lines.append(f"  {rule}: {n}" + (f"  （{zh}）" if zh else ""))
    return "\n".join(lines)
