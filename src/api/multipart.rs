//! `multipart/form-data` bodies (RFC 7578), as the upload endpoints receive them from the SDKs
//! (Python `requests`, Node `form-data`), curl and browsers. The body is already in memory
//! (`RawBody`), so each part is a zero-copy slice of it.

use axum::body::Bytes;
use memchr::memmem;

/// One part of a form: its field name, the file name and Content-Type when it is a file, and its
/// bytes.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub data: Bytes,
}

/// The form's parts, in order.
#[derive(Debug, Default)]
pub struct Form(pub Vec<Part>);

impl Form {
    /// The first part named `name`.
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.0.iter().find(|p| p.name == name)
    }

    /// The first part named `name` as text (a value field); `None` when absent or not UTF-8.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.part(name).and_then(|p| std::str::from_utf8(&p.data).ok())
    }
}

/// The `boundary` of a `multipart/form-data` Content-Type; `None` for any other type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
    .filter(|b| !b.is_empty() && b.len() <= 70)
}

/// A header parameter (`name="x"`) of a part's Content-Disposition.
fn disposition_param(value: &str, key: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        k.trim().eq_ignore_ascii_case(key).then(|| v.replace("\\\"", "\""))
    })
}

/// Splits `body` at `boundary` into parts; `Err` says what is malformed.
pub fn parse(body: &Bytes, boundary: &str) -> Result<Form, String> {
    let open = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(delimiter.as_bytes());
    // The first delimiter may open the body directly (no CRLF before it) or follow a preamble.
    let mut at = if body.starts_with(open.as_bytes()) {
        open.len()
    } else {
        finder.find(body).map(|i| i + delimiter.len()).ok_or("no multipart boundary in the body")?
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(Form(parts));
        }
        // Transport padding, then the CRLF that ends the delimiter line.
        let line_end = memmem::find(rest, b"\r\n").ok_or("a part without headers")?;
        let head_start = at + line_end + 2;
        let head_len = memmem::find(&body[head_start..], b"\r\n\r\n");
        // A part with no header lines at all starts its data right away.
        let (headers, data_start) = if body[head_start..].starts_with(b"\r\n") {
            ("", head_start + 2)
        } else {
            let n = head_len.ok_or("a part whose headers do not end")?;
            (std::str::from_utf8(&body[head_start..head_start + n]).map_err(|_| "part headers are not UTF-8")?, head_start + n + 4)
        };
        let data_len = finder.find(&body[data_start..]).ok_or("the body ends inside a part")?;
        let mut name = None;
        let mut file_name = None;
        for line in headers.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else { continue };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                name = disposition_param(v, "name");
                file_name = disposition_param(v, "filename");
            }
        }
        let name = name.ok_or("a part without a Content-Disposition name")?;
        parts.push(Part { name, file_name, data: body.slice(data_start..data_start + data_len) });
        at = data_start + data_len + delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_form() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"image_type\"\r\n\r\nmessage\r\n\
              --XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a \\\"b\\\".png\"\r\n\
              Content-Type: image/png\r\n\r\n\x89PNG\r\n--X\r\n--XyZ--\r\n",
        );
        let form = parse(&body, "XyZ").unwrap();
        assert_eq!(form.text("image_type"), Some("message"));
        let image = form.part("image").unwrap();
        assert_eq!(image.file_name.as_deref(), Some("a \"b\".png"));
        assert_eq!(&image.data[..], b"\x89PNG\r\n--X");
        assert!(parse(&Bytes::from_static(b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx"), "XyZ").is_err());
        assert_eq!(boundary("multipart/form-data; boundary=\"a b\""), Some("a b".into()));
        assert_eq!(boundary("application/json"), None);
    }
}
