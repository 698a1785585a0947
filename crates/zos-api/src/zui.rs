//! zui: `zui.zui@0.0.1` — the console dashboard.

crate::contract! {
    /// The console dashboard's error panel.
    object Zui, ZuiClient, ZuiContract = "zui", "zui", "0.0.1" {
        /// Show `errors` under `label`; an empty list clears the label.
        fn push_errors = "PushErrors" (label: String, errors: Vec<String>);
    }
}
