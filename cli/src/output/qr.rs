//! QR codes drawn with Unicode half blocks, two modules per character cell.

use anyhow::Context;
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// Draws `payload` as a QR code for a terminal.
///
/// Colours are inverted (light modules are drawn as blocks), which scans
/// correctly on the usual light-on-dark terminal; the quiet zone is kept.
pub fn render(payload: &str) -> anyhow::Result<String> {
    let code = QrCode::new(payload.as_bytes()).context("cannot draw the QR code")?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// Writes `payload` as a QR code into a PNG file (dark on light, 8 pixels
/// per module, quiet zone kept): what a login page would show.
pub fn write_png(payload: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let code = QrCode::new(payload.as_bytes()).context("cannot draw the QR code")?;
    let image = code
        .render::<image::Luma<u8>>()
        .module_dimensions(8, 8)
        .quiet_zone(true)
        .build();
    image
        .save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("cannot write the QR code to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_code_is_a_square_block_of_half_block_characters() {
        let drawing = render("b3RwLXNlY3JldA==").unwrap();
        let lines: Vec<&str> = drawing.lines().collect();
        let width = lines[0].chars().count();
        // Two modules per line: height in lines is about half the width.
        assert!(lines.len() * 2 >= width && lines.len() * 2 <= width + 2);
        assert!(
            drawing
                .chars()
                .all(|c| " \u{2580}\u{2584}\u{2588}\n".contains(c))
        );
    }
}
