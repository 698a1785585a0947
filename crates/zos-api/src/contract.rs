//! The `contract!` macro: one declaration of a bus object gives its trait, typed client, server dispatch and
//! the metadata the `zbus` CLI uses.
//!
//! ```text
//! contract! {
//!     /// The calculator.
//!     object Calculator, CalculatorClient, CalculatorContract = "calc", "calculator", "1.0" {
//!         /// Adds two numbers.
//!         fn add = "Add" (a: f64, b: f64) -> f64;
//!         /// Joins words.
//!         fn join = "Join" (sep: String) variadic(words: String) -> String;
//!         /// Returns only an error.
//!         fn fail = "Fail" ();
//!     }
//!     streams {
//!         /// A stream of ticks.
//!         stream ticks = "Ticks" -> u64;
//!     }
//! }
//! ```
//!
//! generates:
//! - `trait Calculator`: one async method per bus method (`fn add(&self, a: f64, b: f64) -> impl Future<Output =
//!   Result<f64, CallError>> + Send`), one per stream (`fn ticks(&self, sink: StreamSink<u64>) -> impl Future<Output
//!   = ()> + Send`, run once when the server starts). A variadic tail arrives as a `Vec`.
//! - `struct CalculatorClient`: `new(bus::Client)`, `with_module(..)`, `with_timeout(..)`, and one async method per
//!   bus method returning `Result<T, bus::Error>`, one per stream returning a `Subscription<T>`.
//! - `struct CalculatorContract`: `MODULE`, `NAME`, `VERSION`, `object_id()`, `server(Arc<impl Calculator>)` (the
//!   `ServerObject` to register), and `describe()` (an [`ObjectContract`] for the CLI).
//!
//! Method and stream names on the wire are the quoted Go names; Rust code never spells them.
//! Every return type must implement `Default` (Go sends the zero value alongside an error) and serde's traits.

use serde_json::Value;
use zos_bus::Output;

/// Encodes JSON arguments into wire arguments.
pub type EncodeJsonArgs = fn(&[Value]) -> Result<Vec<Vec<u8>>, String>;

/// One method of an object, as the CLI sees it.
pub struct MethodContract {
    /// The Go (wire) name.
    pub name: &'static str,
    /// The Rust name.
    pub rust_name: &'static str,
    /// `(name, type)` of each fixed argument.
    pub args: &'static [(&'static str, &'static str)],
    /// `(name, type)` of the variadic tail.
    pub variadic: Option<(&'static str, &'static str)>,
    /// The return type (`()` for methods returning only an error).
    pub returns: &'static str,
    /// First line of the doc comment.
    pub doc: &'static str,
    /// Encode JSON arguments into wire arguments, typed by the declaration.
    pub encode_json_args: EncodeJsonArgs,
    /// Decode a method output into JSON, typed by the declaration.
    pub decode_json_output: fn(&Output) -> Result<Value, zos_bus::Error>,
}

impl MethodContract {
    /// `Name(arg: Type, ...) -> Ret`, for listings and error messages.
    pub fn signature(&self) -> String {
        let mut args: Vec<String> = self.args.iter().map(|(n, t)| format!("{n}: {t}")).collect();
        if let Some((n, t)) = self.variadic {
            args.push(format!("{n}: ...{t}"));
        }
        if self.returns == "()" {
            format!("{}({})", self.name, args.join(", "))
        } else {
            format!("{}({}) -> {}", self.name, args.join(", "), self.returns)
        }
    }
}

/// One stream of an object, as the CLI sees it.
pub struct StreamContract {
    /// The Go (wire) name.
    pub name: &'static str,
    /// The event type.
    pub item: &'static str,
    /// First line of the doc comment.
    pub doc: &'static str,
    /// Decode one event into JSON.
    pub decode_json: fn(&[u8]) -> Result<Value, String>,
}

/// A bus object's declaration: where it lives and what it offers.
pub struct ObjectContract {
    pub module: &'static str,
    pub name: &'static str,
    pub version: &'static str,
    pub doc: &'static str,
    pub methods: Vec<MethodContract>,
    pub streams: Vec<StreamContract>,
}

impl ObjectContract {
    /// The object id, `name@version`.
    pub fn object_id(&self) -> zos_bus::ObjectId {
        zos_bus::ObjectId::new(self.name, self.version)
    }

    /// A method by its wire name (case-sensitive, as on the wire).
    pub fn method(&self, name: &str) -> Option<&MethodContract> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// A stream by its wire name.
    pub fn stream(&self, name: &str) -> Option<&StreamContract> {
        self.streams.iter().find(|s| s.name == name)
    }
}

/// Check the number of JSON arguments against a declaration.
pub fn check_json_count(
    args: &[Value],
    fixed: usize,
    variadic: bool,
    signature: &str,
) -> Result<(), String> {
    if args.len() == fixed || (variadic && args.len() > fixed) {
        Ok(())
    } else {
        let expect = if variadic {
            format!("at least {fixed}")
        } else {
            fixed.to_string()
        };
        Err(format!(
            "{signature} takes {expect} argument(s), got {}",
            args.len()
        ))
    }
}

/// Decode one JSON argument as `T` and encode it for the wire.
pub fn json_arg<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: &Value,
    position: usize,
    name: &str,
    ty: &str,
) -> Result<Vec<u8>, String> {
    let v: T = serde_json::from_value(value.clone())
        .map_err(|e| format!("argument {position} ({name}: {ty}): {e}"))?;
    zos_types::msgpack::to_vec(&v).map_err(|e| format!("argument {position} ({name}: {ty}): {e}"))
}

/// Decode a method output as `T` and turn it into JSON.
pub fn json_output<T: serde::de::DeserializeOwned + serde::Serialize>(
    output: &Output,
    what: &str,
) -> Result<Value, zos_bus::Error> {
    let v: T = zos_bus::client::decode_output(output, what)?;
    Ok(serde_json::to_value(&v).unwrap_or(Value::Null))
}

/// Decode an event as `T` and turn it into JSON.
pub fn json_event<T: serde::de::DeserializeOwned + serde::Serialize>(
    raw: &[u8],
) -> Result<Value, String> {
    let v: T = zos_types::msgpack::from_slice(raw).map_err(|e| e.to_string())?;
    serde_json::to_value(&v).map_err(|e| e.to_string())
}

/// First line of a doc comment gathered from `#[doc = ...]` attributes.
pub fn first_doc_line(lines: &[&str]) -> &'static str {
    // Leaked once per describe() call of the CLI; contracts are static data.
    let text = lines
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .unwrap_or("");
    Box::leak(text.to_string().into_boxed_str())
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ret {
    () => {
        ()
    };
    ($t:ty) => {
        $t
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ret_name {
    () => {
        "()"
    };
    ($t:ty) => {
        stringify!($t)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __output {
    ($r:expr) => {
        $crate::bus::codec::unit_output($r)
    };
    ($r:expr, $t:ty) => {
        $crate::bus::codec::value_output::<$t>($r)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __count {
    () => { 0usize };
    ($head:ident $($tail:ident)*) => { 1usize + $crate::__count!($($tail)*) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __is_some {
    () => {
        false
    };
    ($x:ident) => {
        true
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __variadic_meta {
    () => {
        None
    };
    ($n:ident, $t:ty) => {
        Some((stringify!($n), stringify!($t)))
    };
}

/// Declare a bus object. See the [module docs](crate::contract).
#[macro_export]
macro_rules! contract {
    (
        $(#[doc = $odoc:literal])*
        object $Trait:ident, $Client:ident, $Contract:ident = $module:literal, $name:literal, $version:literal {
            $(
                $(#[doc = $mdoc:literal])*
                fn $method:ident = $wire:literal ( $($arg:ident : $aty:ty),* $(,)? )
                    $(variadic ( $va:ident : $vty:ty ))? $(-> $ret:ty)? ;
            )*
        }
        $(streams {
            $(
                $(#[doc = $sdoc:literal])*
                stream $stream:ident = $swire:literal -> $sty:ty ;
            )*
        })?
    ) => {
        $(#[doc = $odoc])*
        ///
        #[doc = concat!("Bus object `", $name, "@", $version, "` of module `", $module, "`.")]
        pub trait $Trait: Send + Sync + 'static {
            $(
                $(#[doc = $mdoc])*
                #[doc = concat!("\n\nWire name: `", $wire, "`.")]
                fn $method(&self, $($arg: $aty,)* $($va: Vec<$vty>)?)
                    -> impl ::std::future::Future<Output = ::std::result::Result<$crate::__ret!($($ret)?), $crate::bus::CallError>> + Send;
            )*
            $($(
                $(#[doc = $sdoc])*
                #[doc = concat!("\n\nStream `", $swire, "`: runs once when the server starts and publishes through `sink`.")]
                fn $stream(&self, sink: $crate::bus::StreamSink<$sty>) -> impl ::std::future::Future<Output = ()> + Send;
            )*)?
        }

        #[doc = concat!("Typed client of `", $module, ".", $name, "@", $version, "`.")]
        #[derive(Clone, Debug)]
        pub struct $Client {
            client: $crate::bus::Client,
            module: ::std::string::String,
            #[allow(dead_code)]
            opts: $crate::bus::CallOptions,
        }

        impl $Client {
            /// A client on the object's own module, with the default deadline.
            pub fn new(client: $crate::bus::Client) -> Self {
                Self { client, module: $module.to_string(), opts: ::std::default::Default::default() }
            }

            /// A client of the same object served under another module name (tests, side-by-side daemons).
            pub fn with_module(client: $crate::bus::Client, module: &str) -> Self {
                Self { client, module: module.to_string(), opts: ::std::default::Default::default() }
            }

            /// The same client with another per-call deadline.
            pub fn with_timeout(&self, timeout: ::std::time::Duration) -> Self {
                Self { client: self.client.clone(), module: self.module.clone(), opts: $crate::bus::CallOptions::timeout(timeout) }
            }

            /// The bus client underneath.
            pub fn bus(&self) -> &$crate::bus::Client {
                &self.client
            }

            $(
                $(#[doc = $mdoc])*
                pub async fn $method(&self, $($arg: $aty,)* $($va: Vec<$vty>)?)
                    -> ::std::result::Result<$crate::__ret!($($ret)?), $crate::bus::Error> {
                    #[allow(unused_mut)]
                    let mut inputs: Vec<Vec<u8>> = Vec::new();
                    $(
                        inputs.push($crate::bus::client::encode_arg(&$arg, concat!($wire, " argument ", stringify!($arg)))?);
                    )*
                    $(
                        for v in &$va {
                            inputs.push($crate::bus::client::encode_arg(v, concat!($wire, " argument ", stringify!($va)))?);
                        }
                    )?
                    self.client
                        .call(&self.module, &$Contract::object_id(), $wire, inputs, self.opts)
                        .await
                }
            )*

            $($(
                $(#[doc = $sdoc])*
                pub async fn $stream(&self) -> ::std::result::Result<$crate::bus::Subscription<$sty>, $crate::bus::Error> {
                    self.client.subscribe_stream(&self.module, &$Contract::object_id(), $swire).await
                }
            )*)?
        }

        #[doc = concat!("Identity, server glue and metadata of `", $module, ".", $name, "@", $version, "`.")]
        pub struct $Contract;

        impl $Contract {
            /// The module that serves the object.
            pub const MODULE: &'static str = $module;
            /// The object name.
            pub const NAME: &'static str = $name;
            /// The object version.
            pub const VERSION: &'static str = $version;

            /// `name@version`.
            pub fn object_id() -> $crate::bus::ObjectId {
                $crate::bus::ObjectId::new($name, $version)
            }

            /// The server object dispatching to `imp`; register it on the module's `Server`.
            pub fn server<T: $Trait>(imp: ::std::sync::Arc<T>) -> $crate::bus::ServerObject {
                let dispatch_imp = imp.clone();
                #[allow(unused_mut)]
                let mut object = $crate::bus::ServerObject::new(Self::object_id(), move |method: String, inputs: Vec<$crate::__serde_bytes::ByteBuf>| {
                    #[allow(unused_variables)]
                    let imp = dispatch_imp.clone();
                    let fut: $crate::bus::BoxFuture<$crate::bus::server::DispatchResult> = Box::pin(async move {
                        let _ = &inputs;
                        match method.as_str() {
                            $(
                                $wire => {
                                    $crate::bus::codec::check_arg_count(&inputs, $crate::__count!($($arg)*), $crate::__is_some!($($va)?))?;
                                    #[allow(unused_mut, unused_variables)]
                                    let mut index = 0usize;
                                    $(
                                        let $arg: $aty = $crate::bus::codec::decode_arg(&inputs, index, stringify!($aty))?;
                                        index += 1;
                                    )*
                                    $(
                                        let $va: Vec<$vty> = $crate::bus::codec::decode_rest(&inputs, index, stringify!($vty))?;
                                    )?
                                    let _ = index;
                                    let result = imp.$method($($arg,)* $($va)?).await;
                                    $crate::__output!(result $(, $ret)?)
                                }
                            )*
                            other => Err($crate::bus::codec::unknown_method(other)),
                        }
                    });
                    fut
                });
                $($(
                    {
                        let imp = imp.clone();
                        object = object.with_stream($swire, move |sink: $crate::bus::RawSink| {
                            let imp = imp.clone();
                            let fut: $crate::bus::BoxFuture<()> = Box::pin(async move { imp.$stream(sink.typed()).await });
                            fut
                        });
                    }
                )*)?
                let _ = imp;
                object
            }

            /// What the CLI needs to call the object with JSON arguments.
            pub fn describe() -> $crate::contract::ObjectContract {
                $crate::contract::ObjectContract {
                    module: $module,
                    name: $name,
                    version: $version,
                    doc: $crate::contract::first_doc_line(&[$($odoc),*]),
                    methods: vec![
                        $(
                            $crate::contract::MethodContract {
                                name: $wire,
                                rust_name: stringify!($method),
                                args: &[$((stringify!($arg), stringify!($aty))),*],
                                variadic: $crate::__variadic_meta!($($va, $vty)?),
                                returns: $crate::__ret_name!($($ret)?),
                                doc: $crate::contract::first_doc_line(&[$($mdoc),*]),
                                encode_json_args: |args: &[$crate::__serde_json::Value]| -> Result<Vec<Vec<u8>>, String> {
                                    let fixed = $crate::__count!($($arg)*);
                                    let signature = concat!($wire, "(", $(stringify!($arg), ": ", stringify!($aty), ", ",)* ")");
                                    $crate::contract::check_json_count(args, fixed, $crate::__is_some!($($va)?), signature)?;
                                    #[allow(unused_mut)]
                                    let mut out: Vec<Vec<u8>> = Vec::new();
                                    #[allow(unused_mut, unused_variables)]
                                    let mut position = 0usize;
                                    $(
                                        out.push($crate::contract::json_arg::<$aty>(&args[position], position + 1, stringify!($arg), stringify!($aty))?);
                                        position += 1;
                                    )*
                                    $(
                                        for value in &args[position..] {
                                            position += 1;
                                            out.push($crate::contract::json_arg::<$vty>(value, position, stringify!($va), stringify!($vty))?);
                                        }
                                    )?
                                    let _ = position;
                                    Ok(out)
                                },
                                decode_json_output: |output: &$crate::bus::Output| {
                                    $crate::contract::json_output::<$crate::__ret!($($ret)?)>(output, concat!($module, ".", $name, "@", $version, " ", $wire))
                                },
                            },
                        )*
                    ],
                    streams: vec![
                        $($(
                            $crate::contract::StreamContract {
                                name: $swire,
                                item: stringify!($sty),
                                doc: $crate::contract::first_doc_line(&[$($sdoc),*]),
                                decode_json: $crate::contract::json_event::<$sty>,
                            },
                        )*)?
                    ],
                }
            }
        }
    };
}
