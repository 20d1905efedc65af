-- The sample shop database of the sql-qa template. `data.db` is built from this file:
--   python -c "import sqlite3; sqlite3.connect('data.db').executescript(open('shop.sql').read())"
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    price_eur REAL NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('placed', 'shipped', 'delivered', 'cancelled')),
    ordered_on TEXT NOT NULL
);
INSERT INTO customers VALUES
    (1, 'Ana Silva', 'Porto'),
    (2, 'Ben Carter', 'Leeds'),
    (3, 'Chiara Rossi', 'Turin'),
    (4, 'Dmitri Ivanov', 'Riga'),
    (5, 'Emma Dubois', 'Nantes'),
    (6, 'Farid Haddad', 'Beirut');
INSERT INTO products VALUES
    (1, 'espresso machine', 249.0),
    (2, 'coffee grinder', 89.0),
    (3, 'milk frother', 39.0),
    (4, 'travel mug', 19.0),
    (5, 'descaling kit', 12.5);
INSERT INTO orders VALUES
    (1001, 1, 1, 1, 'delivered', '2026-09-02'),
    (1002, 2, 2, 2, 'shipped', '2026-09-14'),
    (1003, 3, 4, 4, 'placed', '2026-10-01'),
    (1004, 4, 3, 1, 'cancelled', '2026-10-03'),
    (1005, 5, 5, 3, 'delivered', '2026-10-11'),
    (1006, 6, 1, 2, 'shipped', '2026-10-20'),
    (1007, 1, 4, 6, 'placed', '2026-11-02'),
    (1008, 2, 3, 1, 'delivered', '2026-11-05'),
    (1009, 3, 2, 1, 'shipped', '2026-11-09'),
    (1010, 5, 1, 1, 'placed', '2026-11-15');
