//! The node's location from the configured geoip services, best effort: the first service that answers gives
//! country, city, latitude and longitude. Nothing here ever blocks registration; without an answer the
//! location stays unknown.

use std::time::Duration;

use serde::Deserialize;
use zos_grid::Location;

/// A geoip service's answer (`https://geoip.grid.tf/`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct GeoipAnswer {
    #[serde(default)]
    pub longitude: f64,
    #[serde(default)]
    pub latitude: f64,
    #[serde(default)]
    pub continent: String,
    #[serde(default)]
    pub country_name: String,
    #[serde(default)]
    pub country_code: String,
    #[serde(default)]
    pub city_name: String,
}

impl GeoipAnswer {
    /// The registrar's location: country and city names, coordinates formatted as Go's `%v` does.
    pub fn location(&self) -> Location {
        Location {
            country: self.country_name.clone(),
            city: self.city_name.clone(),
            longitude: go_float(self.longitude),
            latitude: go_float(self.latitude),
        }
    }
}

/// Why no service gave a location (one line per service tried).
#[derive(Debug, thiserror::Error)]
#[error("no geoip service answered: {}", .0.join("; "))]
pub struct GeoipError(pub Vec<String>);

/// Asks the geoip services in order.
#[derive(Clone, Debug)]
pub struct Geoip {
    urls: Vec<String>,
    http: reqwest::Client,
}

impl Geoip {
    /// Services tried in order; each gets `timeout` for the whole request.
    pub fn new(urls: Vec<String>, timeout: Duration) -> Geoip {
        zos_grid::client::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        Geoip { urls, http }
    }

    /// Whether any service is configured.
    pub fn is_configured(&self) -> bool {
        !self.urls.is_empty()
    }

    /// The location from the first service that answers with a usable body.
    pub async fn fetch(&self) -> Result<Location, GeoipError> {
        let mut errors = Vec::new();
        for url in &self.urls {
            match self.fetch_one(url).await {
                Ok(loc) => return Ok(loc),
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        if errors.is_empty() {
            errors.push("none configured ([registrar] geoip_urls is empty)".into());
        }
        Err(GeoipError(errors))
    }

    async fn fetch_one(&self, url: &str) -> Result<Location, String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| crate::error_chain(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("status {status}"));
        }
        let body = resp.bytes().await.map_err(|e| crate::error_chain(&e))?;
        let answer: GeoipAnswer =
            serde_json::from_slice(&body).map_err(|e| format!("unreadable answer: {e}"))?;
        if answer.country_name.is_empty() && answer.latitude == 0.0 && answer.longitude == 0.0 {
            return Err("the answer has neither a country nor coordinates".into());
        }
        Ok(answer.location())
    }
}

/// Format a float as Go's `%v` (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest decimal that reads back
/// as the same number, in exponent form (`1e-05`, `1.234567e+06`) when the exponent is below -4 or at least 6.
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` is the shortest round-trip form too: "1.2345e-5".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_prints_them() {
        for (v, want) in [
            (0.0, "0"),
            (51.05, "51.05"),
            (3.7, "3.7"),
            (-122.4194, "-122.4194"),
            (100000.0, "100000"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-0.000012345, "-1.2345e-05"),
            (1e21, "1e+21"),
            (50.8503, "50.8503"),
            (4.3517, "4.3517"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(go_float(v), want, "{v}");
        }
    }

    #[test]
    fn answer_to_location() {
        let a: GeoipAnswer = serde_json::from_str(
            r#"{"longitude": 3.7174, "latitude": 51.0543, "continent": "EU", "country_name": "Belgium", "country_code": "BE", "city_name": "Ghent"}"#,
        )
        .unwrap();
        assert_eq!(
            a.location(),
            Location {
                country: "Belgium".into(),
                city: "Ghent".into(),
                longitude: "3.7174".into(),
                latitude: "51.0543".into(),
            }
        );
    }

    #[tokio::test]
    async fn nothing_configured_is_a_clear_error() {
        let g = Geoip::new(vec![], Duration::from_secs(1));
        assert!(!g.is_configured());
        let err = g.fetch().await.unwrap_err().to_string();
        assert!(err.contains("geoip_urls is empty"), "{err}");
    }
}
