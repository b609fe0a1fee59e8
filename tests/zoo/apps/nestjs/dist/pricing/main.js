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
Object.defineProperty(exports, "__esModule", { value: true });
// pricing: quotes, shipping quotes and stock levels. Deployed twice, in
// us-east-1 and in eu-west-1 (APP_REGION); no store of its own.
const common_1 = require("@nestjs/common");
const core_1 = require("@nestjs/core");
const bootstrap_1 = require("../lib/bootstrap");
const filter_1 = require("../lib/filter");
const flags_1 = require("../lib/flags");
const REGION = process.env.APP_REGION || 'us-east-1';
// Sales tax per deployment region. BUG (scenario region_specific_chain): the
// eu-west-1 deployment shipped without its table, so every quote there reads
// `.standard` of undefined.
const TAX_TABLES = {
    'us-east-1': { standard: 0.0725, reduced: 0.03 },
};
// Stock as the legacy warehouse feed delivers it: `available` is text, empty
// while a count is running.
const STOCK_FEED = {
    'SKU-1': { available: '12', warehouse: 'w1' },
    'SKU-2': { available: '4', warehouse: 'w2' },
    'SKU-7': { available: '', warehouse: 'w2' },
};
function listPriceCents(sku) {
    const n = Number(sku.replace(/\D/g, '')) || 1;
    return 1000 + n * 250;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let QuotesController = class QuotesController {
    health() {
        return { ok: true, region: REGION };
    }
    quote(sku, req) {
        const signed = (0, flags_1.evaluateFlag)('pricing.signed-quotes', req.tenant) === 'on';
        const net = listPriceCents(sku);
        const rate = TAX_TABLES[REGION].standard;
        const tax = Math.round(net * rate);
        return { sku, region: REGION, netCents: net, taxCents: tax, grossCents: net + tax, signed };
    }
    // The freight partner behind this endpoint needs about a second for heavy goods.
    async shippingQuote(sku) {
        const heavy = sku.startsWith('HEAVY');
        await sleep(heavy ? 1000 : 15);
        return { sku, carrier: heavy ? 'freight' : 'parcel', cents: heavy ? 8900 : 590, days: heavy ? 6 : 2 };
    }
    // Renders the feed entry by hand (the legacy feed's format). BUG (scenario
    // malformed_json): an empty count yields `"available":,` — invalid JSON sent
    // with status 200.
    stock(sku, res) {
        const row = STOCK_FEED[sku] ?? { available: '0', warehouse: 'w1' };
        res
            .status(200)
            .type('application/json')
            .send(`{"sku":"${sku}","available":${row.available},"warehouse":"${row.warehouse}"}`);
    }
};
__decorate([
    (0, common_1.Get)('healthz'),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", []),
    __metadata("design:returntype", void 0)
], QuotesController.prototype, "health", null);
__decorate([
    (0, common_1.Get)('quote/:sku'),
    __param(0, (0, common_1.Param)('sku')),
    __param(1, (0, common_1.Req)()),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String, Object]),
    __metadata("design:returntype", void 0)
], QuotesController.prototype, "quote", null);
__decorate([
    (0, common_1.Get)('shipping-quote/:sku'),
    __param(0, (0, common_1.Param)('sku')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", Promise)
], QuotesController.prototype, "shippingQuote", null);
__decorate([
    (0, common_1.Get)('stock/:sku'),
    __param(0, (0, common_1.Param)('sku')),
    __param(1, (0, common_1.Res)()),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String, Object]),
    __metadata("design:returntype", void 0)
], QuotesController.prototype, "stock", null);
QuotesController = __decorate([
    (0, common_1.Controller)()
], QuotesController);
let PricingModule = class PricingModule {
};
PricingModule = __decorate([
    (0, common_1.Module)({
        controllers: [QuotesController],
        providers: [{ provide: core_1.APP_FILTER, useClass: filter_1.AllExceptionsFilter }],
    })
], PricingModule);
(0, bootstrap_1.bootstrap)(PricingModule, `pricing (${REGION})`);
