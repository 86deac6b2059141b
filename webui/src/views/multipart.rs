//! A `multipart/form-data` body (file uploads) read whole, within the
//! listener's body limit, into named fields.

use axum::extract::{FromRequest, Multipart, Request};

/// One field: its name, the file name and type the browser gave (file
/// fields), its bytes.
pub struct Field {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// The fields of one form.
#[derive(Default)]
pub struct Fields {
    fields: Vec<Field>,
}

impl Fields {
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.bytes.as_slice())
    }

    /// Every field named `name` (a file input with `multiple`), in order;
    /// the fields are taken out.
    pub fn take_all(&mut self, name: &str) -> Vec<Field> {
        let (taken, kept) = std::mem::take(&mut self.fields)
            .into_iter()
            .partition(|f| f.name == name);
        self.fields = kept;
        taken
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
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let bytes = field
            .bytes()
            .await
            .map_err(|_| "The upload was malformed or too large.")?;
        if out.fields.len() >= 32 {
            return Err("Too many fields.");
        }
        out.fields.push(Field {
            name,
            file_name,
            content_type,
            bytes: bytes.to_vec(),
        });
    }
    Ok(out)
}
