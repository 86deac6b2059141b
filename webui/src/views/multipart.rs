//! A `multipart/form-data` body (file uploads) read whole, within the
//! listener's body limit, into named fields.

use axum::extract::{FromRequest, Multipart, Request};

/// The fields of one form.
#[derive(Default)]
pub struct Fields {
    fields: Vec<(String, Vec<u8>)>,
}

impl Fields {
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.file(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// An upload form's content: the chosen file, else the pasted text;
    /// `None` when both are empty.
    pub fn file_or_text(&self, file: &str, text: &str) -> Option<Vec<u8>> {
        self.file(file)
            .filter(|f| !f.is_empty())
            .map(<[u8]>::to_vec)
            .or_else(|| {
                self.text(text)
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| t.as_bytes().to_vec())
            })
    }
}

/// Reads every field; a malformed body is a bad request.
pub async fn read(request: Request) -> Result<Fields, &'static str> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| "The form was not sent as multipart/form-data.")?;
    let mut out = Fields::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|_| "The upload was malformed or too large.")?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|_| "The upload was malformed or too large.")?;
        if out.fields.len() >= 32 {
            return Err("Too many fields.");
        }
        out.fields.push((name, bytes.to_vec()));
    }
    Ok(out)
}
