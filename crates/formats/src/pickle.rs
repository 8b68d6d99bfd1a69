//! A small, safe unpickler for what `torch.save` writes (protocol 2, plus the few protocol 4
//! opcodes other writers use).
//!
//! Nothing is executed: a `GLOBAL` is just a (module, name) pair and calling one with `REDUCE`
//! or `NEWOBJ` records an opaque [`Node::Call`], except for the handful of callables a checkpoint
//! is made of: `collections.OrderedDict` (an empty dict), `torch._utils._rebuild_tensor_v2` (a
//! [`TensorRef`]) and the wrappers that merely pass a tensor through (`_rebuild_parameter`,
//! `_rebuild_from_type_v2`).
//!
//! Values live in an arena and refer to each other by [`NodeId`], so a memo lookup shares a value
//! instead of copying it (as Python does) and memory stays proportional to the input: every opcode
//! creates at most one node or stack slot. Stack, mark and memo sizes are capped as well.

use std::collections::HashMap;

use crate::DType;

/// Most slots the value stack may hold.
const MAX_STACK: usize = 1 << 22;
/// Most nested `MARK`s.
const MAX_MARKS: usize = 1 << 16;
/// Most memo entries.
const MAX_MEMO: usize = 1 << 22;
/// Most nodes in the arena.
const MAX_NODES: usize = 1 << 24;
/// Most dimensions of a tensor.
const MAX_DIMS: usize = 64;
/// Deepest chain of pass-through tensor wrappers followed.
const MAX_CALL_DEPTH: usize = 4;

/// Index of a value in a [`Pickle`]'s arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(u32);

/// One unpickled value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<NodeId>),
    List(Vec<NodeId>),
    /// Keys and values in the order written (a repeated key is kept as written).
    Dict(Vec<(NodeId, NodeId)>),
    /// A reference to `module.name`, never resolved.
    Global {
        module: String,
        name: String,
    },
    /// `BINPERSID`: a persistent id (for torch, a storage reference tuple).
    Persistent(NodeId),
    /// `REDUCE`/`NEWOBJ` of a callable this reader does not interpret.
    Call {
        callable: NodeId,
        args: NodeId,
    },
    /// A recognised tensor rebuild call.
    Tensor(TensorRef),
    /// A tensor rebuild call whose arguments do not make sense; the text says why.
    BadTensor(String),
}

/// Where a torch tensor's values live: a storage (an archive entry) plus a strided view of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// First element of the view, in elements of the storage's dtype.
    pub storage_offset: u64,
    /// Outermost first.
    pub size: Vec<u64>,
    /// In elements, one per dimension of `size`.
    pub stride: Vec<u64>,
}

impl TensorRef {
    /// Number of elements of the view (`None` on overflow).
    pub fn numel(&self) -> Option<u64> {
        self.size.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
    }
    /// True when the strides are those of a row-major array of `size` (dimensions of extent 1
    /// may have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut expect = 1u64;
        for (&n, &s) in self.size.iter().zip(&self.stride).rev() {
            if n != 1 && s != expect {
                return false;
            }
            expect = match expect.checked_mul(n) {
                Some(e) => e,
                None => return false,
            };
        }
        true
    }
    /// One past the last storage element the view touches (`storage_offset` when it is empty),
    /// `None` on overflow.
    pub fn storage_end(&self) -> Option<u64> {
        if self.size.contains(&0) {
            return Some(self.storage_offset);
        }
        let mut last = self.storage_offset;
        for (&n, &s) in self.size.iter().zip(&self.stride) {
            last = last.checked_add((n - 1).checked_mul(s)?)?;
        }
        last.checked_add(1)
    }
}

/// A storage reference from a persistent id `('storage', type, key, location, numel)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    /// Name of the archive entry under `<prefix>/data/`.
    pub key: String,
    /// `module.name` of the storage class or dtype global, for messages.
    pub type_name: String,
    /// Element type, `None` when the storage type is not one this crate represents.
    pub dtype: Option<DType>,
    /// Device location as written (`"cpu"`, `"cuda:0"`...).
    pub location: String,
    /// Size as written: elements for typed storages, bytes for untyped ones.
    pub numel: u64,
    /// The storage class was `UntypedStorage`, so `numel` counts bytes.
    pub untyped: bool,
}

impl StorageRef {
    /// Bytes of the storage (`None` without a known dtype or on overflow).
    pub fn nbytes(&self) -> Option<u64> {
        if self.untyped {
            return Some(self.numel);
        }
        self.numel.checked_mul(self.dtype?.block_bytes() as u64)
    }
}

/// Why a pickle could not be read: the byte offset of the opcode at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError {
    pub offset: usize,
    pub msg: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pickle byte {}: {}", self.offset, self.msg)
    }
}

impl std::error::Error for PickleError {}

/// An unpickled value tree: an arena of nodes and the root the `STOP` opcode returned.
#[derive(Debug, Clone)]
pub struct Pickle {
    nodes: Vec<Node>,
    root: NodeId,
}

impl Pickle {
    /// The value `STOP` returned.
    pub fn root(&self) -> NodeId {
        self.root
    }
    /// The node behind `id`.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }
    /// The string behind `id`, if it is one.
    pub fn as_str(&self, id: NodeId) -> Option<&str> {
        match self.node(id) {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The entries of a dict (including an `OrderedDict`), if `id` is one.
    pub fn dict_items(&self, id: NodeId) -> Option<&[(NodeId, NodeId)]> {
        match self.node(id) {
            Node::Dict(items) => Some(items),
            _ => None,
        }
    }
    /// The tensor behind `id`, or why it is not one.
    pub fn tensor(&self, id: NodeId) -> Result<&TensorRef, String> {
        match self.node(id) {
            Node::Tensor(t) => Ok(t),
            Node::BadTensor(msg) => Err(msg.clone()),
            other => Err(format!(
                "expected a tensor, found {}",
                self.describe_node(other)
            )),
        }
    }
    /// A short description of a value for messages.
    pub fn describe(&self, id: NodeId) -> String {
        self.describe_node(self.node(id))
    }
    fn describe_node(&self, node: &Node) -> String {
        match node {
            Node::None => "None".into(),
            Node::Bool(b) => format!("bool {b}"),
            Node::Int(i) => format!("int {i}"),
            Node::Float(x) => format!("float {x}"),
            Node::Str(s) => format!("string {:?}", truncate(s, 40)),
            Node::Bytes(b) => format!("{} bytes", b.len()),
            Node::Tuple(v) => format!("tuple of {}", v.len()),
            Node::List(v) => format!("list of {}", v.len()),
            Node::Dict(v) => format!("dict of {}", v.len()),
            Node::Global { module, name } => format!("global {module}.{name}"),
            Node::Persistent(_) => "persistent id".into(),
            Node::Call { callable, .. } => match self.node(*callable) {
                Node::Global { module, name } => format!("object built by {module}.{name}"),
                _ => "opaque object".into(),
            },
            Node::Tensor(_) => "tensor".into(),
            Node::BadTensor(_) => "malformed tensor".into(),
        }
    }
    /// True when `id` is a recognised tensor rebuild call, well-formed or not.
    pub fn is_tensor(&self, id: NodeId) -> bool {
        matches!(self.node(id), Node::Tensor(_) | Node::BadTensor(_))
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Unpickles `data`. Errors name the byte offset of the opcode at fault.
pub fn parse(data: &[u8]) -> Result<Pickle, PickleError> {
    Unpickler {
        data,
        pos: 0,
        op_at: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed, for errors.
    op_at: usize,
    nodes: Vec<Node>,
    stack: Vec<NodeId>,
    marks: Vec<usize>,
    memo: HashMap<u32, NodeId>,
}

type R<T> = Result<T, PickleError>;

impl<'a> Unpickler<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(PickleError {
            offset: self.op_at,
            msg: msg.into(),
        })
    }

    fn take(&mut self, n: usize, what: &str) -> R<&'a [u8]> {
        let data = self.data;
        match self.pos.checked_add(n).filter(|&end| end <= data.len()) {
            Some(end) => {
                let s = &data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => self.err(format!(
                "{what} needs {n} bytes, only {} left",
                data.len() - self.pos
            )),
        }
    }
    fn u8(&mut self, what: &str) -> R<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> R<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> R<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> R<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn len_u64(&mut self, what: &str) -> R<usize> {
        let n = self.u64(what)?;
        match usize::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => self.err(format!("{what} length {n} is too large")),
        }
    }
    fn line(&mut self, what: &str) -> R<String> {
        let rest = &self.data[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return self.err(format!("{what}: no end of line"));
        };
        let s = match std::str::from_utf8(&rest[..nl]) {
            Ok(s) => s.to_string(),
            Err(_) => return self.err(format!("{what} is not UTF-8")),
        };
        self.pos += nl + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> R<String> {
        let b = self.take(n, "string")?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => self.err(format!("string is not UTF-8: {e}")),
        }
    }

    fn alloc(&mut self, node: Node) -> R<NodeId> {
        if self.nodes.len() >= MAX_NODES {
            return self.err(format!("more than {MAX_NODES} values"));
        }
        self.nodes.push(node);
        Ok(NodeId((self.nodes.len() - 1) as u32))
    }
    fn push_id(&mut self, id: NodeId) -> R<()> {
        if self.stack.len() >= MAX_STACK {
            return self.err(format!("stack deeper than {MAX_STACK}"));
        }
        self.stack.push(id);
        Ok(())
    }
    fn push(&mut self, node: Node) -> R<()> {
        let id = self.alloc(node)?;
        self.push_id(id)
    }
    fn pop(&mut self, what: &str) -> R<NodeId> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.err(format!("{what}: stack empty"));
        }
        Ok(self.stack.pop().unwrap_or(NodeId(0)))
    }
    fn top(&self, what: &str) -> R<NodeId> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(&id) if self.stack.len() > floor => Ok(id),
            _ => self.err(format!("{what}: stack empty")),
        }
    }
    fn pop_mark(&mut self, what: &str) -> R<Vec<NodeId>> {
        match self.marks.pop() {
            Some(at) => Ok(self.stack.split_off(at)),
            None => self.err(format!("{what} without MARK")),
        }
    }
    fn pop_n(&mut self, n: usize, what: &str) -> R<Vec<NodeId>> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.pop(what)?);
        }
        v.reverse();
        Ok(v)
    }
    fn memo_put(&mut self, key: u32) -> R<()> {
        let id = self.top("memo put")?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return self.err(format!("more than {MAX_MEMO} memo entries"));
        }
        self.memo.insert(key, id);
        Ok(())
    }
    fn memo_get(&mut self, key: u32) -> R<()> {
        match self.memo.get(&key) {
            Some(&id) => self.push_id(id),
            None => self.err(format!("memo key {key} was never stored")),
        }
    }

    fn set_items(&mut self, dict: NodeId, kv: Vec<NodeId>) -> R<()> {
        if kv.len() & 1 != 0 {
            return self.err("SETITEMS with an odd number of values");
        }
        match &mut self.nodes[dict.0 as usize] {
            Node::Dict(items) => {
                items.extend(kv.chunks_exact(2).map(|c| (c[0], c[1])));
                Ok(())
            }
            // Items set on an object this reader does not model are dropped with it.
            Node::Call { .. } => Ok(()),
            _ => self.err("SETITEM on a non-dict"),
        }
    }

    fn append(&mut self, list: NodeId, values: Vec<NodeId>) -> R<()> {
        match &mut self.nodes[list.0 as usize] {
            Node::List(items) => {
                items.extend(values);
                Ok(())
            }
            Node::Call { .. } => Ok(()),
            _ => self.err("APPEND on a non-list"),
        }
    }

    fn global_name(&self, id: NodeId) -> Option<(&str, &str)> {
        match &self.nodes[id.0 as usize] {
            Node::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    fn tuple_items(&self, id: NodeId) -> Option<&[NodeId]> {
        match &self.nodes[id.0 as usize] {
            Node::Tuple(v) | Node::List(v) => Some(v),
            _ => None,
        }
    }

    /// `callable(*args)` for the callables a checkpoint is made of; an opaque call otherwise.
    fn call(&mut self, callable: NodeId, args: NodeId, depth: usize) -> R<NodeId> {
        let name = self
            .global_name(callable)
            .map(|(m, n)| (m.to_string(), n.to_string()));
        let argv: Vec<NodeId> = self
            .tuple_items(args)
            .map(<[NodeId]>::to_vec)
            .unwrap_or_default();
        if let Some((module, name)) = name {
            match (module.as_str(), name.as_str()) {
                ("collections", "OrderedDict") if argv.is_empty() => {
                    return self.alloc(Node::Dict(Vec::new()));
                }
                ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                    let node = match self.rebuild_tensor(&argv) {
                        Ok(t) => Node::Tensor(t),
                        Err(msg) => Node::BadTensor(format!("{module}.{name}: {msg}")),
                    };
                    return self.alloc(node);
                }
                ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state")
                    if !argv.is_empty() =>
                {
                    return Ok(argv[0]);
                }
                ("torch._tensor", "_rebuild_from_type_v2")
                    if argv.len() >= 3 && depth < MAX_CALL_DEPTH =>
                {
                    return self.call(argv[0], argv[2], depth + 1);
                }
                _ => {}
            }
        }
        self.alloc(Node::Call { callable, args })
    }

    fn int(&self, id: NodeId, what: &str) -> Result<u64, String> {
        match &self.nodes[id.0 as usize] {
            Node::Int(i) if *i >= 0 => Ok(*i as u64),
            Node::Int(i) => Err(format!("{what} is negative ({i})")),
            other => Err(format!("{what} is not an integer ({other:?})")),
        }
    }

    fn ints(&self, id: NodeId, what: &str) -> Result<Vec<u64>, String> {
        let items = self
            .tuple_items(id)
            .ok_or_else(|| format!("{what} is not a tuple"))?;
        if items.len() > MAX_DIMS {
            return Err(format!(
                "{what} has {} dimensions (at most {MAX_DIMS})",
                items.len()
            ));
        }
        items.iter().map(|&i| self.int(i, what)).collect()
    }

    fn rebuild_tensor(&self, argv: &[NodeId]) -> Result<TensorRef, String> {
        if argv.len() < 4 {
            return Err(format!("{} arguments, expected at least 4", argv.len()));
        }
        let storage = match &self.nodes[argv[0].0 as usize] {
            Node::Persistent(pid) => self.storage_ref(*pid)?,
            other => return Err(format!("storage is not a persistent id ({other:?})")),
        };
        let storage_offset = self.int(argv[1], "storage_offset")?;
        let size = self.ints(argv[2], "size")?;
        let stride = self.ints(argv[3], "stride")?;
        if size.len() != stride.len() {
            return Err(format!(
                "size {size:?} and stride {stride:?} have different lengths"
            ));
        }
        Ok(TensorRef {
            storage,
            storage_offset,
            size,
            stride,
        })
    }

    fn storage_ref(&self, pid: NodeId) -> Result<StorageRef, String> {
        let items = match &self.nodes[pid.0 as usize] {
            Node::Tuple(v) if v.len() >= 5 => v,
            other => {
                let want = "('storage', type, key, location, numel)";
                return Err(format!("persistent id is not a {want} tuple ({other:?})"));
            }
        };
        if self.nodes[items[0].0 as usize] != Node::Str("storage".into()) {
            return Err("persistent id does not start with 'storage'".into());
        }
        let (module, name) = self
            .global_name(items[1])
            .ok_or("storage type is not a global")?;
        let type_name = format!("{module}.{name}");
        let untyped = name == "UntypedStorage";
        let mut dtype = storage_dtype(module, name);
        if untyped {
            // A dtype global stored next to an untyped storage gives its element type.
            dtype = items[5..]
                .iter()
                .filter_map(|&i| self.global_name(i))
                .find_map(|(m, n)| storage_dtype(m, n));
        }
        let key = match &self.nodes[items[2].0 as usize] {
            Node::Str(s) => s.clone(),
            Node::Int(i) => i.to_string(),
            other => return Err(format!("storage key is not a string ({other:?})")),
        };
        let location = match &self.nodes[items[3].0 as usize] {
            Node::Str(s) => s.clone(),
            _ => String::new(),
        };
        let numel = self.int(items[4], "storage numel")?;
        Ok(StorageRef {
            key,
            type_name,
            dtype,
            location,
            numel,
            untyped,
        })
    }

    fn run(mut self) -> R<Pickle> {
        loop {
            self.op_at = self.pos;
            let op = match self.data.get(self.pos) {
                Some(&b) => b,
                None => return self.err("end of data before STOP"),
            };
            self.pos += 1;
            match op {
                // PROTO
                0x80 => {
                    let v = self.u8("PROTO")?;
                    if v > 5 {
                        return self.err(format!("pickle protocol {v} is not supported"));
                    }
                }
                // FRAME: framing is advisory; the opcodes inside are read as they come.
                0x95 => {
                    self.u64("FRAME")?;
                }
                b'.' => {
                    let root = self.pop("STOP")?;
                    return Ok(Pickle {
                        nodes: self.nodes,
                        root,
                    });
                }
                b'(' => {
                    if self.marks.len() >= MAX_MARKS {
                        return self.err(format!("more than {MAX_MARKS} nested MARKs"));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop("POP")?;
                }
                b'1' => {
                    self.pop_mark("POP_MARK")?;
                }
                b'2' => {
                    let id = self.top("DUP")?;
                    self.push_id(id)?;
                }
                b'N' => self.push(Node::None)?,
                0x88 => self.push(Node::Bool(true))?,
                0x89 => self.push(Node::Bool(false))?,
                b'J' => {
                    let v = self.u32("BININT")? as i32;
                    self.push(Node::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.u8("BININT1")?;
                    self.push(Node::Int(v.into()))?;
                }
                b'M' => {
                    let v = self.u16("BININT2")?;
                    self.push(Node::Int(v.into()))?;
                }
                0x8a => {
                    let n = self.u8("LONG1")? as usize;
                    let b = self.take(n, "LONG1")?;
                    if n > 8 {
                        return self.err(format!("LONG1 of {n} bytes does not fit in 64 bits"));
                    }
                    let v = if n == 0 {
                        0
                    } else {
                        let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                        let mut a = [fill; 8];
                        a[..n].copy_from_slice(b);
                        i64::from_le_bytes(a)
                    };
                    self.push(Node::Int(v))?;
                }
                b'G' => {
                    let b = self.take(8, "BINFLOAT")?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Node::Float(f64::from_be_bytes(a)))?;
                }
                b'X' => {
                    let n = self.u32("BINUNICODE")? as usize;
                    let s = self.utf8(n)?;
                    self.push(Node::Str(s))?;
                }
                0x8c => {
                    let n = self.u8("SHORT_BINUNICODE")? as usize;
                    let s = self.utf8(n)?;
                    self.push(Node::Str(s))?;
                }
                0x8d => {
                    let n = self.len_u64("BINUNICODE8")?;
                    let s = self.utf8(n)?;
                    self.push(Node::Str(s))?;
                }
                b'B' => {
                    let n = self.u32("BINBYTES")? as usize;
                    let b = self.take(n, "BINBYTES")?.to_vec();
                    self.push(Node::Bytes(b))?;
                }
                b'C' => {
                    let n = self.u8("SHORT_BINBYTES")? as usize;
                    let b = self.take(n, "SHORT_BINBYTES")?.to_vec();
                    self.push(Node::Bytes(b))?;
                }
                0x8e => {
                    let n = self.len_u64("BINBYTES8")?;
                    let b = self.take(n, "BINBYTES8")?.to_vec();
                    self.push(Node::Bytes(b))?;
                }
                b')' => self.push(Node::Tuple(Vec::new()))?,
                b't' => {
                    let v = self.pop_mark("TUPLE")?;
                    self.push(Node::Tuple(v))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let v = self.pop_n(n, "TUPLE1/2/3")?;
                    self.push(Node::Tuple(v))?;
                }
                b']' => self.push(Node::List(Vec::new()))?,
                b'l' => {
                    let v = self.pop_mark("LIST")?;
                    self.push(Node::List(v))?;
                }
                b'a' => {
                    let v = self.pop("APPEND")?;
                    let list = self.top("APPEND")?;
                    self.append(list, vec![v])?;
                }
                b'e' => {
                    let v = self.pop_mark("APPENDS")?;
                    let list = self.top("APPENDS")?;
                    self.append(list, v)?;
                }
                b'}' => self.push(Node::Dict(Vec::new()))?,
                b'd' => {
                    let kv = self.pop_mark("DICT")?;
                    let id = self.alloc(Node::Dict(Vec::new()))?;
                    self.set_items(id, kv)?;
                    self.push_id(id)?;
                }
                b's' => {
                    let v = self.pop("SETITEM")?;
                    let k = self.pop("SETITEM")?;
                    let dict = self.top("SETITEM")?;
                    self.set_items(dict, vec![k, v])?;
                }
                b'u' => {
                    let kv = self.pop_mark("SETITEMS")?;
                    let dict = self.top("SETITEMS")?;
                    self.set_items(dict, kv)?;
                }
                b'c' => {
                    let module = self.line("GLOBAL module")?;
                    let name = self.line("GLOBAL name")?;
                    self.push(Node::Global { module, name })?;
                }
                0x93 => {
                    let name = self.pop("STACK_GLOBAL")?;
                    let module = self.pop("STACK_GLOBAL")?;
                    let (Node::Str(m), Node::Str(n)) =
                        (&self.nodes[module.0 as usize], &self.nodes[name.0 as usize])
                    else {
                        return self.err("STACK_GLOBAL operands are not strings");
                    };
                    let node = Node::Global {
                        module: m.clone(),
                        name: n.clone(),
                    };
                    self.push(node)?;
                }
                b'q' => {
                    let k = self.u8("BINPUT")?;
                    self.memo_put(k.into())?;
                }
                b'r' => {
                    let k = self.u32("LONG_BINPUT")?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = match u32::try_from(self.memo.len()) {
                        Ok(k) => k,
                        Err(_) => return self.err("memo full"),
                    };
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8("BINGET")?;
                    self.memo_get(k.into())?;
                }
                b'j' => {
                    let k = self.u32("LONG_BINGET")?;
                    self.memo_get(k)?;
                }
                b'Q' => {
                    let pid = self.pop("BINPERSID")?;
                    self.push(Node::Persistent(pid))?;
                }
                b'R' => {
                    let args = self.pop("REDUCE")?;
                    let callable = self.pop("REDUCE")?;
                    let id = self.call(callable, args, 0)?;
                    self.push_id(id)?;
                }
                0x81 => {
                    let args = self.pop("NEWOBJ")?;
                    let cls = self.pop("NEWOBJ")?;
                    let id = self.alloc(Node::Call {
                        callable: cls,
                        args,
                    })?;
                    self.push_id(id)?;
                }
                b'b' => {
                    // The state of objects this reader models (dicts, tensors) is not needed.
                    self.pop("BUILD")?;
                    self.top("BUILD")?;
                }
                _ => {
                    return self.err(format!(
                        "unknown or unsupported opcode 0x{op:02x} ({:?}) at offset {}",
                        op as char, self.op_at
                    ))
                }
            }
        }
    }
}

/// Element type of a storage class (`torch.FloatStorage`) or dtype global (`torch.bfloat16`).
fn storage_dtype(module: &str, name: &str) -> Option<DType> {
    if module != "torch" {
        return None;
    }
    match name {
        "FloatStorage" | "float32" | "float" => Some(DType::F32),
        "HalfStorage" | "float16" | "half" => Some(DType::F16),
        "BFloat16Storage" | "bfloat16" => Some(DType::BF16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_and_strings() {
        // [1, -2, 300, 70000, 2**40, "hé"] as protocol 2 would write it.
        let mut p = vec![0x80, 2, b']', b'('];
        p.extend_from_slice(b"K\x01J");
        p.extend_from_slice(&(-2i32).to_le_bytes());
        p.extend_from_slice(&[b'M', 0x2c, 0x01]);
        p.push(b'J');
        p.extend_from_slice(&70000i32.to_le_bytes());
        p.extend_from_slice(&[0x8a, 6, 0, 0, 0, 0, 0, 1]);
        p.push(b'X');
        p.extend_from_slice(&3u32.to_le_bytes());
        p.extend_from_slice("hé".as_bytes());
        p.extend_from_slice(b"e.");
        let pk = parse(&p).unwrap();
        let Node::List(items) = pk.node(pk.root()) else {
            panic!("not a list");
        };
        let got: Vec<&Node> = items.iter().map(|&i| pk.node(i)).collect();
        assert_eq!(
            got,
            vec![
                &Node::Int(1),
                &Node::Int(-2),
                &Node::Int(300),
                &Node::Int(70000),
                &Node::Int(1 << 40),
                &Node::Str("hé".into())
            ]
        );
    }

    #[test]
    fn negative_long1_and_float() {
        let mut p = vec![0x8a, 2, 0x00, 0xff, b'G'];
        p.extend_from_slice(&1.5f64.to_be_bytes());
        p.extend_from_slice(&[0x86, b'.']);
        let pk = parse(&p).unwrap();
        let Node::Tuple(t) = pk.node(pk.root()) else {
            panic!()
        };
        assert_eq!(pk.node(t[0]), &Node::Int(-256));
        assert_eq!(pk.node(t[1]), &Node::Float(1.5));
    }

    #[test]
    fn memo_shares_values() {
        // d = {}; d["a"] = d_list = []; d_list.append(1) after memoizing: visible through d.
        let p = [
            b'}', b'q', 0, b'X', 1, 0, 0, 0, b'a', b']', b'q', 1, b's', b'h', 1, b'K', 7, b'a',
            b'0', b'.',
        ];
        let pk = parse(&p).unwrap();
        let items = pk.dict_items(pk.root()).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(pk.as_str(items[0].0), Some("a"));
        let Node::List(l) = pk.node(items[0].1) else {
            panic!()
        };
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn errors_name_offsets() {
        let e = parse(&[0x80, 2, 0xff]).unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.msg.contains("0xff"), "{e}");
        assert!(parse(&[0x80, 2]).unwrap_err().msg.contains("before STOP"));
        assert!(parse(b".").unwrap_err().msg.contains("stack empty"));
        assert!(parse(&[b'h', 3, b'.'])
            .unwrap_err()
            .msg
            .contains("memo key 3"));
        assert!(parse(&[b'X', 0xff, 0xff, 0xff, 0x7f, b'a'])
            .unwrap_err()
            .msg
            .contains("only 1 left"));
        assert!(parse(b"e.").unwrap_err().msg.contains("without MARK"));
        assert!(parse(&[b'K', 1, b'K', 2, b's', b'.'])
            .unwrap_err()
            .msg
            .contains("stack empty"));
        assert!(parse(&[b'K', 1, b'K', 2, b'K', 3, b's', b'.'])
            .unwrap_err()
            .msg
            .contains("non-dict"));
    }

    #[test]
    fn bounded_marks_and_stack() {
        let p = vec![b'('; MAX_MARKS + 1];
        assert!(parse(&p).unwrap_err().msg.contains("MARK"));
        // BINGET of one value many times grows the stack by one slot per two bytes only.
        let mut p = vec![b'N', b'q', 0];
        for _ in 0..1000 {
            p.extend_from_slice(&[b'h', 0]);
        }
        p.push(b'.');
        assert!(parse(&p).is_ok());
    }

    #[test]
    fn unknown_reduce_is_opaque() {
        let p = b"cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        let pk = parse(p).unwrap();
        assert!(matches!(pk.node(pk.root()), Node::Call { .. }));
        let e = pk.tensor(pk.root()).unwrap_err();
        assert!(e.contains("os.system"), "{e}");
    }
}
