//! The printable pre-selection voucher (R4.8): one self-contained HTML page (inline CSS, no
//! external resources) that prints on one A5/A4 sheet, and its JSON form.
//!
//! Everything shown comes through [`escape_html`]; practice vouchers (R4.13) carry a large
//! 模拟 / VOID mark and say they are not valid.

use platepool_engine::calendar::local_datetime;

/// What a voucher shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    /// The voucher's serial number (选号凭证编号).
    pub serial: String,
    /// The verification code the office checks the voucher with.
    pub code: String,
    /// The plate serial alone (`A1234`).
    pub plate_serial: String,
    /// The full plate (`粤K·A1234`).
    pub plate: String,
    /// The office id and its name.
    pub office: String,
    pub office_name: String,
    /// The application id.
    pub application: String,
    /// The plate class (`small`, `small_new_energy`, …).
    pub class: String,
    /// The VIN with its middle hidden (empty for practice).
    pub vin_masked: String,
    pub claimed_at_ms: u64,
    pub register_by_ms: u64,
    /// Practice mode: the number was never taken; the voucher is void.
    pub practice: bool,
    /// The application's state (`claimed`, `issued`).
    pub state: String,
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An instant as a person at the office reads it: office local time (UTC+8).
pub fn local_time_text(ms: u64) -> String {
    local_datetime(ms)
        .format("%Y年%m月%d日 %H:%M:%S")
        .to_string()
}

/// The printed name of a plate class.
pub fn class_label(class: &str) -> String {
    match class {
        "small" => "小型汽车号牌".to_string(),
        "small_new_energy" => "小型新能源汽车号牌".to_string(),
        other => other.to_string(),
    }
}

impl Voucher {
    /// The printable page.
    pub fn html(&self) -> String {
        let e = escape_html;
        let new_energy = self.class.contains("new_energy");
        let plate_class = if new_energy {
            "plate green"
        } else {
            "plate blue"
        };
        let title = if self.practice {
            "互联网预选号牌凭证（模拟）"
        } else {
            "互联网预选号牌凭证"
        };
        let practice_banner = if self.practice {
            r#"<div class="banner" role="note">模拟选号 · 本凭证无效（VOID）· 未占用任何号牌，不能办理注册登记</div>
<div class="watermark" aria-hidden="true">模拟 VOID</div>"#
        } else {
            ""
        };
        let vin_row = if self.vin_masked.is_empty() {
            String::new()
        } else {
            format!(
                "<tr><th>车辆识别代号</th><td class=\"mono\">{}</td></tr>",
                e(&self.vin_masked)
            )
        };
        let state_note = match self.state.as_str() {
            "issued" => "<p class=\"note ok\">该号牌已办理注册登记。</p>",
            _ => "",
        };
        let deadline_note = if self.practice {
            "这是模拟选号的演示凭证：号牌没有被预选，凭证不能在车管所使用。".to_string()
        } else {
            format!(
                "请于 {} （车管所当地时间）前携带本凭证、机动车所有人身份证明和车辆相关资料到{}办理注册登记。逾期未办理的，预选号牌作废并列入黑名单。",
                e(&local_time_text(self.register_by_ms)),
                e(&self.office_name)
            )
        };
        format!(
            r#"<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title} {plate}</title>
<style>
  @page {{ size: A5 portrait; margin: 12mm; }}
  * {{ box-sizing: border-box; }}
  body {{ margin: 0; background: #eef1f5; color: #1d2330;
         font-family: "PingFang SC", "Noto Sans CJK SC", "Microsoft YaHei", "Source Han Sans SC", sans-serif; }}
  .sheet {{ position: relative; overflow: hidden; max-width: 148mm; margin: 24px auto; padding: 28px 32px;
            background: #fff; border: 1px solid #c9d1dc; border-radius: 6px; box-shadow: 0 2px 10px rgba(0,0,0,.08); }}
  h1 {{ margin: 0 0 4px; font-size: 22px; letter-spacing: 4px; text-align: center; }}
  .sub {{ margin: 0 0 20px; text-align: center; color: #5b6577; font-size: 13px; }}
  .plate {{ display: block; width: fit-content; margin: 8px auto 20px; padding: 10px 26px; border-radius: 8px;
            font-size: 40px; font-weight: 700; letter-spacing: 6px; border: 3px solid #fff;
            outline: 2px solid #1d2330; -webkit-print-color-adjust: exact; print-color-adjust: exact; }}
  .blue {{ background: #1a4fa3; color: #fff; }}
  .green {{ background: linear-gradient(180deg, #f4fbf4 0%, #7fcf83 100%); color: #111; }}
  table {{ width: 100%; border-collapse: collapse; font-size: 15px; }}
  th, td {{ padding: 8px 6px; border-bottom: 1px solid #e3e7ee; text-align: left; vertical-align: top; }}
  th {{ width: 34%; color: #5b6577; font-weight: 500; white-space: nowrap; }}
  .mono {{ font-family: "SFMono-Regular", Consolas, "Liberation Mono", monospace; letter-spacing: 1px; }}
  .code {{ font-size: 20px; font-weight: 700; }}
  .note {{ margin: 18px 0 0; font-size: 13px; line-height: 1.7; color: #394152; }}
  .ok {{ color: #1d7a35; }}
  .banner {{ margin: 0 0 16px; padding: 10px 12px; border: 2px dashed #c62828; color: #c62828;
             font-weight: 700; text-align: center; }}
  .watermark {{ position: absolute; top: 42%; left: 50%; transform: translate(-50%, -50%) rotate(-24deg);
                font-size: 96px; font-weight: 900; color: rgba(198, 40, 40, .16); white-space: nowrap;
                pointer-events: none; -webkit-print-color-adjust: exact; print-color-adjust: exact; }}
  .stamp {{ margin-top: 22px; display: flex; justify-content: space-between; font-size: 13px; color: #5b6577; }}
  .print {{ display: block; margin: 0 auto 24px; padding: 8px 22px; font-size: 15px; cursor: pointer; }}
  @media print {{
    body {{ background: #fff; }}
    .sheet {{ margin: 0; border: none; box-shadow: none; max-width: none; }}
    .print {{ display: none; }}
  }}
</style>
</head>
<body>
<main class="sheet">
{practice_banner}
<h1>{title}</h1>
<p class="sub">{office_name}</p>
<div class="{plate_class}" aria-label="号牌号码">{plate}</div>
<table>
<tr><th>号牌号码</th><td>{plate}</td></tr>
<tr><th>号牌种类</th><td>{class}</td></tr>
<tr><th>办理车管所</th><td>{office_name}</td></tr>
{vin_row}
<tr><th>预选时间</th><td>{claimed_at}</td></tr>
<tr><th>注册登记截止</th><td><strong>{register_by}</strong>（车管所当地时间）</td></tr>
<tr><th>凭证编号</th><td class="mono">{serial}</td></tr>
<tr><th>验证码</th><td class="mono code">{code}</td></tr>
<tr><th>申请编号</th><td class="mono">{application}</td></tr>
</table>
{state_note}
<p class="note">{deadline_note}</p>
<div class="stamp"><span>打印时请保持号牌底色</span><span>车管所可凭凭证编号和验证码核验本凭证</span></div>
</main>
<button class="print" type="button" onclick="window.print()">打印凭证</button>
</body>
</html>
"#,
            title = title,
            plate = e(&self.plate),
            plate_class = plate_class,
            office_name = e(&self.office_name),
            class = e(&class_label(&self.class)),
            vin_row = vin_row,
            claimed_at = e(&local_time_text(self.claimed_at_ms)),
            register_by = e(&local_time_text(self.register_by_ms)),
            serial = e(&self.serial),
            code = e(&self.code),
            application = e(&self.application),
            state_note = state_note,
            deadline_note = deadline_note,
            practice_banner = practice_banner,
        )
    }
}

#[cfg(test)]
impl Voucher {
    /// A voucher with every field set, for tests.
    pub(crate) fn sample(practice: bool) -> Voucher {
        Voucher {
            serial: "MAOMING-20261124-7".into(),
            code: "01234567".into(),
            plate_serial: "A1234".into(),
            plate: "粤K·A1234".into(),
            office: "maoming".into(),
            office_name: "茂名市<车管所>&\"".into(),
            application: "maoming-7".into(),
            class: "small".into(),
            vin_masked: "LSV**********1234".into(),
            claimed_at_ms: 1_795_000_000_000,
            register_by_ms: 1_795_300_000_000,
            practice,
            state: "claimed".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voucher(practice: bool) -> Voucher {
        Voucher::sample(practice)
    }

    #[test]
    fn the_page_shows_everything_escaped() {
        let html = voucher(false).html();
        assert!(html.contains("互联网预选号牌凭证"));
        assert!(html.contains("粤K·A1234"));
        assert!(html.contains("MAOMING-20261124-7"));
        assert!(html.contains("01234567"));
        assert!(html.contains("LSV**********1234"));
        assert!(html.contains("茂名市&lt;车管所&gt;&amp;&quot;"));
        assert!(!html.contains("<车管所>"));
        assert!(!html.contains("模拟"));
    }

    #[test]
    fn practice_vouchers_say_void() {
        let html = voucher(true).html();
        assert!(html.contains("模拟"));
        assert!(html.contains("VOID"));
    }

    #[test]
    fn register_by_is_in_office_local_time() {
        // 2026-11-27T15:59:59Z is 23:59:59 in UTC+8.
        let ms = platepool_engine::calendar::parse_rfc3339("2026-11-27T15:59:59Z").expect("time");
        assert_eq!(local_time_text(ms), "2026年11月27日 23:59:59");
        assert_eq!(escape_html("<a href='x'>"), "&lt;a href=&#39;x&#39;&gt;");
    }
}
