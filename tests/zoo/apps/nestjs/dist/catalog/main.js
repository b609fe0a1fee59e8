"use strict";
var __decorate = (this && this.__decorate) || function (decorators, target, key, desc) {
    var c = arguments.length, r = c < 3 ? target : desc === null ? desc = Object.getOwnPropertyDescriptor(target, key) : desc, d;
    if (typeof Reflect === "object" && typeof Reflect.decorate === "function") r = Reflect.decorate(decorators, target, key, desc);
    else for (var i = decorators.length - 1; i >= 0; i--) if (d = decorators[i]) r = (c < 3 ? d(r) : c > 3 ? d(target, key, r) : d(target, key)) || r;
    return c > 3 && r && Object.defineProperty(target, key, r), r;
};
var __metadata = (this && this.__metadata) || function (k, v) {
    if (typeof Reflect === "object" && typeof Reflect.metadata === "function") return Reflect.metadata(k, v);
};
var __param = (this && this.__param) || function (paramIndex, decorator) {
    return function (target, key) { decorator(target, key, paramIndex); }
};
var __importDefault = (this && this.__importDefault) || function (mod) {
    return (mod && mod.__esModule) ? mod : { "default": mod };
};
Object.defineProperty(exports, "__esModule", { value: true });
// catalog: items, prices (through pricing), reports, inventory, recommendations,
// bundles and order summaries. PostgreSQL through pg, Redis through ioredis.
const common_1 = require("@nestjs/common");
const core_1 = require("@nestjs/core");
const ioredis_1 = __importDefault(require("ioredis"));
const pg_1 = require("pg");
const filter_1 = require("../lib/filter");
const flags_1 = require("../lib/flags");
const bootstrap_1 = require("../lib/bootstrap");
const upstream_1 = require("../lib/upstream");
let Stores = class Stores {
    db = new pg_1.Pool({ connectionString: process.env.PG_URL, max: 5 });
    // Reports run on their own pool; the server cancels their statements after 1.5 s.
    reports = new pg_1.Pool({ connectionString: process.env.PG_URL, max: 4, statement_timeout: 1500 });
    // The inventory ledger allows one connection; a request waits 300 ms for it.
    ledger = new pg_1.Pool({ connectionString: process.env.PG_URL, max: 1, connectionTimeoutMillis: 300 });
    redis = new ioredis_1.default(process.env.REDIS_URL, { maxRetriesPerRequest: 1 });
    async onModuleDestroy() {
        await Promise.allSettled([this.db.end(), this.reports.end(), this.ledger.end()]);
        this.redis.disconnect();
    }
    async tenantSettings(tenant) {
        const { rows } = await this.db.query('SELECT tenant, region, shipping_profile FROM tenant_settings WHERE tenant = $1', [tenant]);
        return rows[0] ?? { tenant, region: 'us', shipping_profile: { carrier: 'ups', zone: 'US-DEFAULT' } };
    }
    async item(sku) {
        const { rows } = await this.db.query('SELECT sku, name, price_cents, weight_g FROM items WHERE sku = $1', [sku]);
        if (!rows[0])
            throw new common_1.NotFoundException(`no item ${sku}`);
        return rows[0];
    }
};
Stores = __decorate([
    (0, common_1.Injectable)()
], Stores);
let Pricing = class Pricing {
    us = new upstream_1.UpstreamClient('pricing', process.env.PRICING_URL);
    eu = new upstream_1.UpstreamClient('pricing', process.env.PRICING_EU_URL);
    forRegion(region) {
        return region === 'eu' ? this.eu : this.us;
    }
};
Pricing = __decorate([
    (0, common_1.Injectable)()
], Pricing);
let ItemsController = class ItemsController {
    stores;
    pricing;
    constructor(stores, pricing) {
        this.stores = stores;
        this.pricing = pricing;
    }
    async getItem(sku, req) {
        const item = await this.stores.item(sku);
        if ((0, flags_1.evaluateFlag)('catalog.shipping-v2', req.tenant) === 'v2') {
            const settings = await this.stores.tenantSettings(req.tenant);
            // BUG (scenario null_field_defect): tenants onboarded before shipping
            // profiles existed have shipping_profile NULL.
            const carrier = settings.shipping_profile.carrier;
            return { ...item, shipping: { carrier, zone: settings.shipping_profile.zone } };
        }
        return { ...item, shipping: { carrier: 'ups', zone: 'US-DEFAULT' } };
    }
    async getPrice(sku, req) {
        const item = await this.stores.item(sku);
        const settings = await this.stores.tenantSettings(req.tenant);
        const quote = await this.pricing.forRegion(settings.region).getJson(`/quote/${encodeURIComponent(sku)}`);
        return { sku, name: item.name, quote };
    }
    // The shipping quote must not hold the product page: 300 ms.
    async getDeliveryEstimate(sku) {
        const quote = await this.pricing.us.getJson(`/shipping-quote/${encodeURIComponent(sku)}`, { timeoutMs: 300 });
        return { sku, ...quote };
    }
    async getAvailability(sku) {
        const stock = await this.pricing.us.getJson(`/stock/${encodeURIComponent(sku)}`);
        return { sku, inStock: stock.available > 0, available: stock.available, warehouse: stock.warehouse };
    }
};
__decorate([
    (0, common_1.Get)(':sku'),
    __param(0, (0, common_1.Param)('sku')),
    __param(1, (0, common_1.Req)()),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String, Object]),
    __metadata("design:returntype", Promise)
], ItemsController.prototype, "getItem", null);
__decorate([
    (0, common_1.Get)(':sku/price'),
    __param(0, (0, common_1.Param)('sku')),
    __param(1, (0, common_1.Req)()),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String, Object]),
    __metadata("design:returntype", Promise)
], ItemsController.prototype, "getPrice", null);
__decorate([
    (0, common_1.Get)(':sku/delivery-estimate'),
    __param(0, (0, common_1.Param)('sku')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", Promise)
], ItemsController.prototype, "getDeliveryEstimate", null);
__decorate([
    (0, common_1.Get)(':sku/availability'),
    __param(0, (0, common_1.Param)('sku')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", Promise)
], ItemsController.prototype, "getAvailability", null);
ItemsController = __decorate([
    (0, common_1.Controller)('items'),
    __metadata("design:paramtypes", [Stores,
        Pricing])
], ItemsController);
const REPORTS = {
    daily: 'SELECT count(*)::int AS items, sum(on_hand)::int AS units FROM items',
    annual: 'SELECT count(*)::int AS items, sum(on_hand)::int AS units FROM items, pg_sleep(2)',
};
let ReportsController = class ReportsController {
    stores;
    constructor(stores) {
        this.stores = stores;
    }
    async getReport(name) {
        const sql = REPORTS[name];
        if (!sql)
            throw new common_1.NotFoundException(`no report ${name}`);
        const { rows } = await this.stores.reports.query(sql);
        return { report: name, ...rows[0] };
    }
};
__decorate([
    (0, common_1.Get)(':name'),
    __param(0, (0, common_1.Param)('name')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", Promise)
], ReportsController.prototype, "getReport", null);
ReportsController = __decorate([
    (0, common_1.Controller)('reports'),
    __metadata("design:paramtypes", [Stores])
], ReportsController);
let InventoryController = class InventoryController {
    stores;
    constructor(stores) {
        this.stores = stores;
    }
    async getOnHand(sku, audit) {
        const sql = audit === 'full'
            ? 'SELECT sku, on_hand FROM items, pg_sleep(1.2) WHERE sku = $1'
            : 'SELECT sku, on_hand FROM items WHERE sku = $1';
        const { rows } = await this.stores.ledger.query(sql, [sku]);
        if (!rows[0])
            throw new common_1.NotFoundException(`no item ${sku}`);
        return rows[0];
    }
};
__decorate([
    (0, common_1.Get)(':sku'),
    __param(0, (0, common_1.Param)('sku')),
    __param(1, (0, common_1.Query)('audit')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String, String]),
    __metadata("design:returntype", Promise)
], InventoryController.prototype, "getOnHand", null);
InventoryController = __decorate([
    (0, common_1.Controller)('inventory'),
    __metadata("design:paramtypes", [Stores])
], InventoryController);
let RecommendationsController = class RecommendationsController {
    stores;
    constructor(stores) {
        this.stores = stores;
    }
    async getRecommendations(req) {
        let skus;
        try {
            skus = await this.stores.redis.lrange(`recs:${req.tenant}`, 0, 9);
        }
        catch (err) {
            throw new common_1.ServiceUnavailableException('recommendations store unavailable', { cause: err });
        }
        return { tenant: req.tenant, skus };
    }
};
__decorate([
    (0, common_1.Get)(),
    __param(0, (0, common_1.Req)()),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [Object]),
    __metadata("design:returntype", Promise)
], RecommendationsController.prototype, "getRecommendations", null);
RecommendationsController = __decorate([
    (0, common_1.Controller)('recommendations'),
    __metadata("design:paramtypes", [Stores])
], RecommendationsController);
let BundlesController = class BundlesController {
    stores;
    logger = new common_1.Logger('BundlesController');
    constructor(stores) {
        this.stores = stores;
    }
    async getBundle(id) {
        let cached = null;
        try {
            cached = await this.stores.redis.get(`bundle:${id}`);
        }
        catch (err) {
            this.logger.warn(`bundle cache read failed, reading the database: ${err.message}`);
        }
        if (cached)
            return JSON.parse(cached);
        const { rows } = await this.stores.db.query('SELECT id, name, components FROM bundles WHERE id = $1', [id]);
        if (!rows[0])
            throw new common_1.NotFoundException(`no bundle ${id}`);
        const bundle = rows[0];
        // BUG (scenario recovered_then_defect): bundles migrated from the old shop
        // have components NULL.
        const skus = bundle.components.map((c) => c.sku);
        return { id: bundle.id, name: bundle.name, skus };
    }
};
__decorate([
    (0, common_1.Get)(':id'),
    __param(0, (0, common_1.Param)('id')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", Promise)
], BundlesController.prototype, "getBundle", null);
BundlesController = __decorate([
    (0, common_1.Controller)('bundles'),
    __metadata("design:paramtypes", [Stores])
], BundlesController);
let OrdersController = class OrdersController {
    stores;
    constructor(stores) {
        this.stores = stores;
    }
    async getOrderSummary(id) {
        const { rows: lines } = await this.stores.db.query('SELECT line_no, sku, qty FROM order_lines WHERE order_id = $1 ORDER BY line_no', [id]);
        if (!lines.length)
            throw new common_1.NotFoundException(`no order ${id}`);
        // One query per line (N+1).
        const items = [];
        for (const line of lines) {
            const { rows } = await this.stores.db.query('SELECT sku, name, price_cents, discount FROM items WHERE sku = $1', [line.sku]);
            items.push({ ...line, item: rows[0] });
        }
        // BUG (scenario n_plus_one_then_defect): items without a discount have
        // discount NULL.
        const priced = items.map((l) => ({
            sku: l.sku,
            qty: l.qty,
            cents: Math.round(l.item.price_cents * l.qty * (1 - l.item.discount.percent / 100)),
        }));
        return { order: id, lines: priced, totalCents: priced.reduce((s, l) => s + l.cents, 0) };
    }
};
__decorate([
    (0, common_1.Get)(':id/summary'),
    __param(0, (0, common_1.Param)('id')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", Promise)
], OrdersController.prototype, "getOrderSummary", null);
OrdersController = __decorate([
    (0, common_1.Controller)('orders'),
    __metadata("design:paramtypes", [Stores])
], OrdersController);
let CatalogModule = class CatalogModule {
};
CatalogModule = __decorate([
    (0, common_1.Module)({
        controllers: [
            ItemsController,
            ReportsController,
            InventoryController,
            RecommendationsController,
            BundlesController,
            OrdersController,
        ],
        providers: [Stores, Pricing, { provide: core_1.APP_FILTER, useClass: filter_1.AllExceptionsFilter }],
    })
], CatalogModule);
(0, bootstrap_1.bootstrap)(CatalogModule, 'catalog');
