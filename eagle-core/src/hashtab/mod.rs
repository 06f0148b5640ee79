//! Large hashes: a table of parts in the heap, so a field operation costs the same with ten
//! fields or a million. Layout and the child blocks of a hash record in `layout.rs`.

mod layout;

pub use layout::{
    Child, MAX_LOG2_PARTS, PART_HEADER, Part, TABLE_HEADER, Table, append_to_part, build_part,
    children, open_part, owns_blocks, publish_append, table_ref, table_size, write_table_ref,
};
