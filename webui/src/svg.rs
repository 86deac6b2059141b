//! Pictures drawn as inline SVG on the server: the QR code of a TOTP
//! secret and the dashboard's traffic chart. Nothing here takes text from
//! outside into the markup: the QR code's content is encoded as modules,
//! the chart takes numbers.

use std::fmt::Write;

use qrcode::QrCode;
use qrcode::render::svg;

/// A QR code of `content` as an `<svg>` element, or `None` if it does not fit.
pub fn qr(content: &str) -> Option<String> {
    let code = QrCode::new(content.as_bytes()).ok()?;
    let svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(svg::Color("#111111"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .build();
    // Inline in HTML: the element alone, without the XML declaration.
    svg.find("<svg")
        .map(|start| svg.get(start..).unwrap_or_default().to_owned())
}

/// A chart of two series (messages in and out per bucket) as an `<svg>`
/// element with a title for screen readers.
pub fn traffic(incoming: &[u64], outgoing: &[u64], title: &str) -> String {
    const W: f64 = 720.0;
    const H: f64 = 160.0;
    let n = incoming.len().max(outgoing.len()).max(2);
    let top = incoming
        .iter()
        .chain(outgoing.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let x = |i: usize| i as f64 * W / (n - 1) as f64;
    let y = |v: u64| H - (v as f64 / top as f64) * (H - 8.0);
    let path = |series: &[u64]| {
        let mut d = String::new();
        for (i, v) in series.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                x(i),
                y(*v)
            );
        }
        d
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"{}\"><line class=\"axis\" x1=\"0\" y1=\"{H}\" x2=\"{W}\" y2=\"{H}\"/>\
         <path class=\"in\" d=\"{}\"/><path class=\"out\" d=\"{}\"/></svg>",
        escape(title),
        path(incoming),
        path(outgoing)
    );
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qr_code_is_an_svg_without_script_or_style() {
        let svg = qr("otpauth://totp/Sealgate:admin?secret=JBSWY3DPEHPK3PXP&issuer=Sealgate")
            .unwrap_or_default();
        assert!(svg.starts_with("<svg"), "{svg:.80}");
        assert!(!svg.contains("script"));
        assert!(!svg.contains("style="), "inline styles would break the CSP");
    }

    #[test]
    fn the_chart_scales_to_the_largest_value() {
        let svg = traffic(&[0, 5, 10], &[1, 1, 1], "in <and> out");
        assert!(svg.contains("M0.0,160.0"));
        assert!(svg.contains("L720.0,8.0"));
        assert!(svg.contains("in &lt;and&gt; out"));
    }
}
